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

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
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
	__u64 packets;
	__u64 bytes;
	__u64 last_ns;
	// The last full ACK from this side; acks counts full ACKs seen.
	__u32 ack_rtt;
	__u32 ack_rtt_var;
	__u32 ack_packet_rate;
	__u32 ack_capacity;
	__u32 ack_byte_rate;
	__u32 acks;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow_val);
} srt_flows SEC(".maps");

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

SEC("tc")
int srt_ingress(struct __sk_buff *skb)
{
	if (skb->protocol != bpf_htons(ETH_P_IP) || skb->gso_size)
		return TC_ACT_UNSPEC;
	if (skb->len < SRT_OFF + SRT_HDR)
		return TC_ACT_UNSPEC;
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if (data + SRT_OFF + SRT_HDR > end) {
		if (bpf_skb_pull_data(skb, SRT_OFF + SRT_HDR))
			return TC_ACT_UNSPEC;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
		if (data + SRT_OFF + SRT_HDR > end)
			return TC_ACT_UNSPEC;
	}
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
	if (!srt_forwarded(srt[0], srt[1], cif))
		return TC_ACT_UNSPEC;
	// Only for what would be forwarded: other traffic pays nothing for it.
	__u32 zero = 0;
	__u64 *deadline = bpf_map_lookup_elem(&srt_deadline, &zero);
	__u64 now = bpf_ktime_get_ns();
	if (!deadline || (*deadline && *deadline < now))
		return TC_ACT_UNSPEC;
	// A full ACK: its RCVLASTACK, RTT, RTTVAR, BUFFERLEFT, RCVSPEED,
	// BANDWIDTH and RCVRATE words.
	__be32 ack[7] = {};
	int full_ack = (srt[0] & 0x80) && cif >= ACK_FULL &&
		       bpf_skb_load_bytes(skb, SRT_OFF + SRT_HDR, ack, sizeof(ack)) == 0;

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

	if (full_ack) {
		v->ack_rtt = bpf_ntohl(ack[1]);
		v->ack_rtt_var = bpf_ntohl(ack[2]);
		v->ack_packet_rate = bpf_ntohl(ack[4]);
		v->ack_capacity = bpf_ntohl(ack[5]);
		v->ack_byte_rate = bpf_ntohl(ack[6]);
		__sync_fetch_and_add(&v->acks, 1);
	}
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, len);
	v->last_ns = now;
	// The route and the next hop's address are the kernel's to find, as
	// for a datagram the proxy sent itself.
	return bpf_redirect_neigh(ifindex, NULL, 0, 0);
}
