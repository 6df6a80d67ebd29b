//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0)
// The in-kernel data path of an established SRT session (data_path ebpf).
//
// Attached at TC ingress (a TCX link, or a cls_bpf filter of a clsact
// qdisc below Linux 6.6) on the interfaces a session's caller and
// origin traffic come in on. A datagram whose 4-tuple is a live session's
// (caller -> listener, or origin -> the session's upstream socket) and
// that carries SRT data, a keepalive, an ACK or an ACKACK is readdressed
// as the user-space relay would have sent it (the proxy's other socket as
// source, the other peer as destination, the destination socket ID
// rewritten where the upstream knows the caller by a substitute ID),
// counted, and redirected to the egress interface towards the other
// peer; a full ACK's link figures (RTT, rates, capacity) are kept in the
// flow's entry for the admin API, as the relay keeps them. Everything
// else (handshakes, SHUTDOWN, NAK, DROPREQ, KM, an ACK not shaped as
// libsrt sends one, anything that does not parse cleanly) goes on
// untouched, where the session's connected sockets take it and the
// user-space relay checks and forwards it as on the socket path. "Goes on" is TC_ACT_UNSPEC (TCX's
// "next"): programs attached after this one, not the proxy's, still see
// the datagram, and the stack gets it after the last.
//
// IPv4 and IPv6 flows are in maps of their own, so that an IPv4 datagram
// hashes and compares a 12-byte key as before IPv6 came; a session whose
// caller and origin are of different families is never installed (an
// address substitution cannot turn one into the other).

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "Dual MIT/GPL";

// A flow as it arrives: network byte order throughout.
struct flow_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
};

// What the program counted of a flow, and the last full ACK from its
// side (acks counts full ACKs seen). Shared by both families' values.
struct flow_stats {
	__u64 packets;
	__u64 bytes;
	__u64 last_ns;
	__u32 ack_rtt;
	__u32 ack_rtt_var;
	__u32 ack_packet_rate;
	__u32 ack_capacity;
	__u32 ack_byte_rate;
	__u32 acks;
};

// What a flow becomes, and its counters. rewrite_dst_socket is the SRT
// destination socket ID to write (network order), 0 to leave it.
struct flow_val {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u32 ifindex;
	__be32 rewrite_dst_socket;
	__u32 _pad;
	struct flow_stats st;
};

// The IPv6 flows: saddr and daddr adjacent, as in the IPv6 header, so
// that both are one 32-byte span for the checksum difference and the
// store.
struct flow_key6 {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
};

struct flow_val6 {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u32 ifindex;
	__be32 rewrite_dst_socket;
	__u32 _pad;
	struct flow_stats st;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow_val);
} srt_flows SEC(".maps");

// Allocated per entry rather than up front: a host with few or no IPv6
// sessions does not pay for 65,536 of them. Lookups cost the same.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct flow_key6);
	__type(value, struct flow_val6);
} srt_flows6 SEC(".maps");

// The dead-man's switch, in CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
// A tc filter (the fallback below Linux 6.6) outlives a killed proxy, so
// there the proxy keeps this ahead of now while it lives; once it has
// passed, nothing is forwarded any more: every datagram goes on to the
// stack, as if the program were not there. 0 is no deadline: TCX links
// die with the process that holds them.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} srt_deadline SEC(".maps");

#define IP_OFF ETH_HLEN
#define UDP_OFF (IP_OFF + sizeof(struct iphdr))
#define SRT_OFF (UDP_OFF + sizeof(struct udphdr))
#define SRT_HDR 16
#define IP_CSUM_OFF (IP_OFF + offsetof(struct iphdr, check))
#define IP_SADDR_OFF (IP_OFF + offsetof(struct iphdr, saddr))
#define IP_DADDR_OFF (IP_OFF + offsetof(struct iphdr, daddr))
#define UDP_SPORT_OFF (UDP_OFF + offsetof(struct udphdr, source))
#define UDP_DPORT_OFF (UDP_OFF + offsetof(struct udphdr, dest))
#define UDP_CSUM_OFF (UDP_OFF + offsetof(struct udphdr, check))
#define SRT_DST_OFF (SRT_OFF + 12)

#define IP6_OFF ETH_HLEN
#define UDP6_OFF (IP6_OFF + sizeof(struct ipv6hdr))
#define SRT6_OFF (UDP6_OFF + sizeof(struct udphdr))
#define IP6_SADDR_OFF (IP6_OFF + offsetof(struct ipv6hdr, saddr))
#define UDP6_SPORT_OFF (UDP6_OFF + offsetof(struct udphdr, source))
#define UDP6_DPORT_OFF (UDP6_OFF + offsetof(struct udphdr, dest))
#define UDP6_CSUM_OFF (UDP6_OFF + offsetof(struct udphdr, check))
#define SRT6_DST_OFF (SRT6_OFF + 12)

// SRT control types the program forwards itself.
#define SRT_CTRL_KEEPALIVE 1
#define SRT_CTRL_ACK 2
#define SRT_CTRL_ACKACK 6

// The ACK shapes libsrt sends, by the length of what follows the header:
// light (one word), small (four), and full (six, seven or eight words).
#define ACK_FULL 28

static __always_inline int ack_shaped(__u32 cif)
{
	return cif == 4 || cif == 16 || cif == 24 || cif == 28 || cif == 32;
}

// srt_forwarded says whether the program forwards a packet of this
// header and cif bytes after it.
static __always_inline int srt_forwarded(__u8 b0, __u8 b1, __u32 cif)
{
	if (!(b0 & 0x80))
		return 1; // data
	__u16 type = ((__u16)(b0 & 0x7f) << 8) | b1;
	if (type == SRT_CTRL_ACK)
		return ack_shaped(cif);
	return type == SRT_CTRL_KEEPALIVE || type == SRT_CTRL_ACKACK;
}

// live says whether the deadline allows forwarding at now. Looked up
// only for what would be forwarded: other traffic pays nothing for it.
static __always_inline int live(__u64 now)
{
	__u32 zero = 0;
	__u64 *deadline = bpf_map_lookup_elem(&srt_deadline, &zero);
	return deadline && !(*deadline && *deadline < now);
}

// count notes a forwarded datagram of len SRT bytes, and a full ACK's
// RTT, RTTVAR, RCVSPEED, BANDWIDTH and RCVRATE words.
static __always_inline void count(struct flow_stats *st, int full_ack, const __be32 *ack, __u64 len, __u64 now)
{
	if (full_ack) {
		st->ack_rtt = bpf_ntohl(ack[1]);
		st->ack_rtt_var = bpf_ntohl(ack[2]);
		st->ack_packet_rate = bpf_ntohl(ack[4]);
		st->ack_capacity = bpf_ntohl(ack[5]);
		st->ack_byte_rate = bpf_ntohl(ack[6]);
		__sync_fetch_and_add(&st->acks, 1);
	}
	__sync_fetch_and_add(&st->packets, 1);
	__sync_fetch_and_add(&st->bytes, len);
	st->last_ns = now;
}

// headers returns the skb's data with its first need bytes readable
// directly (pulled in if they were not), or NULL for a shorter datagram.
static __always_inline void *headers(struct __sk_buff *skb, __u32 need)
{
	if (skb->len < need)
		return NULL;
	void *data = (void *)(long)skb->data;
	if (data + need > (void *)(long)skb->data_end) {
		if (bpf_skb_pull_data(skb, need))
			return NULL;
		data = (void *)(long)skb->data;
		if (data + need > (void *)(long)skb->data_end)
			return NULL;
	}
	return data;
}

// taken is what the program learns of a datagram it forwards.
struct taken {
	__u64 now;
	int full_ack;
	__be32 ack[7];
};

// take says whether a live flow's datagram, its SRT header at srt_off
// and cif bytes after it, is forwarded now, reading a full ACK's words.
static __always_inline int take(struct __sk_buff *skb, const __u8 *srt, __u32 srt_off, __u32 cif, struct taken *t)
{
	if (!srt_forwarded(srt[0], srt[1], cif))
		return 0;
	t->now = bpf_ktime_get_ns();
	if (!live(t->now))
		return 0;
	t->full_ack = (srt[0] & 0x80) && cif >= ACK_FULL &&
		      bpf_skb_load_bytes(skb, srt_off + SRT_HDR, t->ack, sizeof(t->ack)) == 0;
	return 1;
}

static __always_inline int ingress4(struct __sk_buff *skb)
{
	void *data = headers(skb, SRT_OFF + SRT_HDR);
	if (!data)
		return TC_ACT_UNSPEC;
	struct ethhdr *eth = data;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_UNSPEC;
	struct iphdr *ip = data + IP_OFF;
	// Options, fragments: the stack's business.
	if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(0x3fff)))
		return TC_ACT_UNSPEC;
	struct udphdr *udp = data + UDP_OFF;
	__u8 *srt = data + SRT_OFF;
	// Lengths that lie (longer than what came, or disagreeing) are the
	// stack's to drop; the program counts only what it can trust.
	__u32 ip_len = bpf_ntohs(ip->tot_len);
	if (ip_len > skb->len - ETH_HLEN || bpf_ntohs(udp->len) != ip_len - sizeof(struct iphdr) ||
	    bpf_ntohs(udp->len) < sizeof(struct udphdr) + SRT_HDR)
		return TC_ACT_UNSPEC;

	struct flow_key k = {
		.saddr = ip->saddr,
		.daddr = ip->daddr,
		.sport = udp->source,
		.dport = udp->dest,
	};
	struct flow_val *v = bpf_map_lookup_elem(&srt_flows, &k);
	if (!v)
		return TC_ACT_UNSPEC;
	__u32 cif = bpf_ntohs(udp->len) - sizeof(struct udphdr) - SRT_HDR;
	struct taken t = {};
	if (!take(skb, srt, SRT_OFF, cif, &t))
		return TC_ACT_UNSPEC;

	__be32 old_dst_socket = *(__be32 *)(srt + 12);
	__be32 new_saddr = v->saddr, new_daddr = v->daddr;
	__be16 new_sport = v->sport, new_dport = v->dport;
	__be32 new_dst_socket = v->rewrite_dst_socket;
	__u32 ifindex = v->ifindex;
	__u64 len = bpf_ntohs(udp->len) - sizeof(struct udphdr);

	// Checksums first, while the old values are at hand; then the fields.
	// BPF_F_MARK_MANGLED_0 keeps "no checksum" (0) as it is.
	const __u64 l4 = BPF_F_MARK_MANGLED_0;
	if (bpf_l4_csum_replace(skb, UDP_CSUM_OFF, k.saddr, new_saddr, l4 | BPF_F_PSEUDO_HDR | 4) ||
	    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, k.daddr, new_daddr, l4 | BPF_F_PSEUDO_HDR | 4) ||
	    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, k.sport, new_sport, l4 | 2) ||
	    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, k.dport, new_dport, l4 | 2))
		return TC_ACT_SHOT;
	if (new_dst_socket && bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_dst_socket, new_dst_socket, l4 | 4))
		return TC_ACT_SHOT;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, k.saddr, new_saddr, 4) ||
	    bpf_l3_csum_replace(skb, IP_CSUM_OFF, k.daddr, new_daddr, 4))
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, IP_SADDR_OFF, &new_saddr, 4, 0) ||
	    bpf_skb_store_bytes(skb, IP_DADDR_OFF, &new_daddr, 4, 0) ||
	    bpf_skb_store_bytes(skb, UDP_SPORT_OFF, &new_sport, 2, 0) ||
	    bpf_skb_store_bytes(skb, UDP_DPORT_OFF, &new_dport, 2, 0))
		return TC_ACT_SHOT;
	if (new_dst_socket &&
	    bpf_skb_store_bytes(skb, SRT_DST_OFF, &new_dst_socket, 4, BPF_F_RECOMPUTE_CSUM))
		return TC_ACT_SHOT;

	count(&v->st, t.full_ack, t.ack, len, t.now);
	// The route and the next hop's address are the kernel's to find, as
	// for a datagram the proxy sent itself.
	return bpf_redirect_neigh(ifindex, NULL, 0, 0);
}

// ingress6 is ingress4 for a fixed IPv6 header straight followed by UDP:
// extension headers (fragments, jumbograms, routing) are left to the
// stack. IPv6 has no header checksum, and a UDP checksum it must have.
static __always_inline int ingress6(struct __sk_buff *skb)
{
	void *data = headers(skb, SRT6_OFF + SRT_HDR);
	if (!data)
		return TC_ACT_UNSPEC;
	struct ethhdr *eth = data;
	if (eth->h_proto != bpf_htons(ETH_P_IPV6))
		return TC_ACT_UNSPEC;
	struct ipv6hdr *ip6 = data + IP6_OFF;
	if (ip6->version != 6 || ip6->nexthdr != IPPROTO_UDP)
		return TC_ACT_UNSPEC;
	struct udphdr *udp = data + UDP6_OFF;
	__u8 *srt = data + SRT6_OFF;
	// A jumbogram's payload length is 0 and fails here too; a zero UDP
	// checksum is invalid over IPv6, the stack's to drop.
	__u32 plen = bpf_ntohs(ip6->payload_len);
	if (plen > skb->len - UDP6_OFF || bpf_ntohs(udp->len) != plen ||
	    plen < sizeof(struct udphdr) + SRT_HDR || !udp->check)
		return TC_ACT_UNSPEC;

	struct flow_key6 k = {
		.sport = udp->source,
		.dport = udp->dest,
	};
	__builtin_memcpy(k.saddr, &ip6->saddr, 16);
	__builtin_memcpy(k.daddr, &ip6->daddr, 16);
	struct flow_val6 *v = bpf_map_lookup_elem(&srt_flows6, &k);
	if (!v)
		return TC_ACT_UNSPEC;
	__u32 cif = plen - sizeof(struct udphdr) - SRT_HDR;
	struct taken t = {};
	if (!take(skb, srt, SRT6_OFF, cif, &t))
		return TC_ACT_UNSPEC;

	__be32 old_dst_socket = *(__be32 *)(srt + 12);
	__be16 new_sport = v->sport, new_dport = v->dport;
	__be32 new_dst_socket = v->rewrite_dst_socket;
	__u32 ifindex = v->ifindex;
	__u64 len = plen - sizeof(struct udphdr);

	// The pseudo-header's addresses change by 32 bytes at once: their
	// difference, then ports and socket ID as for IPv4.
	__s64 diff = bpf_csum_diff((__be32 *)k.saddr, 32, (__be32 *)v->saddr, 32, 0);
	if (diff < 0)
		return TC_ACT_SHOT;
	const __u64 l4 = BPF_F_MARK_MANGLED_0;
	if (bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, 0, diff, l4 | BPF_F_PSEUDO_HDR) ||
	    bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, k.sport, new_sport, l4 | 2) ||
	    bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, k.dport, new_dport, l4 | 2))
		return TC_ACT_SHOT;
	if (new_dst_socket && bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, old_dst_socket, new_dst_socket, l4 | 4))
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, IP6_SADDR_OFF, v->saddr, 32, 0) ||
	    bpf_skb_store_bytes(skb, UDP6_SPORT_OFF, &new_sport, 2, 0) ||
	    bpf_skb_store_bytes(skb, UDP6_DPORT_OFF, &new_dport, 2, 0))
		return TC_ACT_SHOT;
	if (new_dst_socket &&
	    bpf_skb_store_bytes(skb, SRT6_DST_OFF, &new_dst_socket, 4, BPF_F_RECOMPUTE_CSUM))
		return TC_ACT_SHOT;

	count(&v->st, t.full_ack, t.ack, len, t.now);
	return bpf_redirect_neigh(ifindex, NULL, 0, 0);
}

SEC("tc")
int srt_ingress(struct __sk_buff *skb)
{
	if (skb->gso_size)
		return TC_ACT_UNSPEC;
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return ingress4(skb);
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return ingress6(skb);
	return TC_ACT_UNSPEC;
}
