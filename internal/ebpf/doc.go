// Package ebpf is the in-kernel data path of established SRT sessions
// (data_path ebpf): a TC program (srtpath.c, built by bpf2go; the object
// is committed) and the process-wide state that loads it, attaches it to
// the interfaces sessions use and keeps one map entry per session and
// direction. See docs/ebpf.md.
package ebpf
