// server_test.go tests the decision a missing versitygw leads to: skip normally, fail under
// SPARROW_REQUIRE_S3=1 — so that CI cannot pass by skipping.
package s3test

import (
	"fmt"
	"testing"
)

// recordTB records Skipf/Fatalf instead of ending the test.
type recordTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordTB) Helper()                      {}
func (r *recordTB) Skipf(f string, args ...any)  { r.skipped = fmt.Sprintf(f, args...) }
func (r *recordTB) Fatalf(f string, args ...any) { r.failed = fmt.Sprintf(f, args...) }

func TestMissingBinary(t *testing.T) {
	t.Setenv("PATH", "")
	t.Setenv("HOME", t.TempDir())
	if p, err := Binary(); err == nil {
		t.Fatalf("Binary() found %s with an empty PATH and HOME", p)
	}
	tests := []struct {
		require    string
		skip, fail bool
	}{
		{"", true, false},
		{"0", true, false},
		{"1", false, true},
	}
	for _, tt := range tests {
		t.Setenv(RequireEnv, tt.require)
		r := &recordTB{TB: t}
		SkipOrFail(r, "no versitygw")
		if (r.skipped != "") != tt.skip || (r.failed != "") != tt.fail {
			t.Errorf("%s=%q: skipped %q, failed %q", RequireEnv, tt.require, r.skipped, r.failed)
		}
	}
}
