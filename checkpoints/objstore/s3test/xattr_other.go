//go:build !linux

// xattr_other.go: off Linux, versitygw's metadata always goes to a sidecar directory.

package s3test

func userXattrs(dir string) bool { return false }
