// hugepages_linux.go: AdviseHugePages asks Linux to back a long-lived float32 buffer with 2 MB pages
// (madvise MADV_HUGEPAGE; with transparent huge pages in `madvise` mode, as on the machines the recipes are
// measured on, the Go heap otherwise gets 4 KB pages). A batched decode step streams every weight matrix once
// from beyond L2, and with 4 KB pages each 4 KB of a 26 MB weight set costs a TLB miss and a page walk
// (BenchmarkLinearRowsHugePages).

package kernels

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// HugePageFloats is the number of float32 in one 2 MB page.
const HugePageFloats = 2 << 20 / 4

// AdviseHugePages advises the kernel to back s with huge pages. s must start on a 2 MB boundary and span a
// multiple of 2 MB (HugeSlab's buffers do). The advice changes no values; where the kernel refuses it the
// memory keeps its 4 KB pages, and the error says why.
func AdviseHugePages(s []float32) error {
	if len(s) == 0 {
		return nil
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*4)
	if err := unix.Madvise(b, unix.MADV_HUGEPAGE); err != nil {
		return fmt.Errorf("kernels: madvise(MADV_HUGEPAGE) of %d MB: %w", len(b)>>20, err)
	}
	return nil
}
