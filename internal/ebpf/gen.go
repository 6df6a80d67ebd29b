package ebpf

// The object and its Go bindings are committed; CI regenerates them and
// fails on a difference (clang from Debian, bpf2go at the go.mod version).
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go@v0.22.0 -tags linux -target bpfel -type flow_stats -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" srtpath srtpath.c
