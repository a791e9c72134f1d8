// slab.go: HugeSlab, one float32 buffer for many long-lived tensors (a network's parameters), laid out on
// 2 MB pages with AdviseHugePages when it is large enough to fill some.

package kernels

import "unsafe"

// HugeSlab returns a zeroed buffer of n float32 (len and cap n). A buffer of at least 4 huge pages starts on a
// 2 MB boundary, owns its memory up to the next 2 MB boundary past its end (the allocation is padded for
// both), and is advised to huge pages (best effort: on error it keeps 4 KB pages; the values are the same).
func HugeSlab(n int) []float32 {
	if n < 4*HugePageFloats {
		return make([]float32, n)
	}
	span := (n + HugePageFloats - 1) / HugePageFloats * HugePageFloats
	buf := make([]float32, span+HugePageFloats)
	off := 0
	if r := int(uintptr(unsafe.Pointer(unsafe.SliceData(buf))) % (2 << 20)); r != 0 {
		off = (2<<20 - r) / 4
	}
	s := buf[off : off+span]
	_ = AdviseHugePages(s) // advice only: 4 KB pages compute the same
	return s[:n:n]
}
