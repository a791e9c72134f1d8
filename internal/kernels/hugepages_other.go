//go:build !linux

// hugepages_other.go: huge-page advice is a Linux madvise; elsewhere AdviseHugePages does nothing.

package kernels

// HugePageFloats is the number of float32 in one 2 MB page.
const HugePageFloats = 2 << 20 / 4

// AdviseHugePages does nothing on this system: memory keeps the pages the runtime gives it.
func AdviseHugePages(s []float32) error { return nil }
