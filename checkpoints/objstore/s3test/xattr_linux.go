// xattr_linux.go probes whether a directory's filesystem keeps user extended attributes, where versitygw's
// posix backend stores object metadata.

package s3test

import (
	"os"
	"path/filepath"
	"syscall"
)

// userXattrs reports whether files in dir accept user.* extended attributes.
func userXattrs(dir string) bool {
	f, err := os.CreateTemp(dir, ".xattr-probe-")
	if err != nil {
		return false
	}
	name := f.Name()
	f.Close()
	defer os.Remove(name)
	if err := syscall.Setxattr(name, "user.sparrow-probe", []byte("1"), 0); err != nil {
		return false
	}
	buf := make([]byte, 8)
	n, err := syscall.Getxattr(filepath.Clean(name), "user.sparrow-probe", buf)
	return err == nil && string(buf[:n]) == "1"
}
