// retry.go runs object-storage operations with exponential backoff on transient errors (network errors,
// HTTP 408/429/5xx, S3 SlowDown/InternalError/RequestTimeout...) and gives up with an error that says how
// many attempts were made and what the last failure was. Permanent errors (access denied, no such bucket,
// a local file that cannot be read, a checksum mismatch) fail at once.

package objstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/minio/minio-go/v7"
)

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// permanent wraps err so that withRetry does not retry it.
func permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// transientS3Codes are S3 error codes worth retrying.
var transientS3Codes = map[string]bool{
	"RequestError": true, "RequestTimeout": true, "Throttling": true, "ThrottlingException": true,
	"RequestLimitExceeded": true, "RequestThrottled": true, "InternalError": true, "SlowDown": true,
	"SlowDownWrite": true, "SlowDownRead": true, "ServiceUnavailable": true, "IncompleteBody": true,
}

// isTransient reports whether err may go away on its own.
func isTransient(err error) bool {
	var p permanentError
	if errors.As(err, &p) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	resp := minio.ToErrorResponse(err)
	if transientS3Codes[resp.Code] {
		return true
	}
	switch st := resp.StatusCode; {
	case st == http.StatusRequestTimeout, st == http.StatusTooManyRequests, st >= 500:
		return true
	case st != 0:
		return false // any other HTTP answer (403, 404, 400...) is the server's considered reply
	}
	if resp.Code != "" {
		return false
	}
	return true // no HTTP answer at all: connection refused or reset, EOF, timeout, DNS
}

// isNotFound reports whether err is S3's "no such key" (or bucket).
func isNotFound(err error) bool {
	resp := minio.ToErrorResponse(err)
	return resp.StatusCode == http.StatusNotFound || resp.Code == "NoSuchKey" || resp.Code == "NotFound"
}

// backoff returns the wait before attempt n+1 (n ≥ 1).
func (r Retry) backoff(n int) time.Duration {
	d := r.Base
	for i := 1; i < n && d < r.Max; i++ {
		d *= 2
	}
	return min(d, r.Max)
}

// withRetry runs op until it succeeds, fails permanently, ctx ends, or the attempts run out. what names the
// operation in logs and in the error.
func (s *Store) withRetry(ctx context.Context, what string, op func(ctx context.Context) error) error {
	var err error
	for n := 1; ; n++ {
		if err = op(ctx); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (%v)", what, ctx.Err(), err)
		}
		if !isTransient(err) {
			return fmt.Errorf("%s: %w", what, err)
		}
		if n >= s.retry.Attempts {
			return fmt.Errorf("%s: giving up after %d attempts (endpoint %s): %w", what, n, s.client.EndpointURL(), err)
		}
		wait := s.retry.backoff(n)
		s.log.Warn("object storage: transient error, retrying", "op", what, "attempt", n, "of", s.retry.Attempts, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (after %d attempts; last error: %v)", what, ctx.Err(), n, err)
		case <-t.C:
		}
	}
}
