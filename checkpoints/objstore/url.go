// url.go parses s3://bucket/prefix URLs and maps them to object keys. The remote layout of a run's
// checkpoints is s3://bucket/prefix/<checkpoint-name>/<file>, plus s3://bucket/prefix/latest naming the
// newest exported checkpoint, mirroring a local checkpoints/ directory.

package objstore

import (
	"fmt"
	"regexp"
	"strings"
)

// URL is an s3://bucket/prefix location. Prefix has no leading or trailing slash ("" = bucket root).
type URL struct {
	Bucket string
	Prefix string
}

// bucketRe is the S3 bucket-name rule configs.checkS3URL also applies.
var bucketRe = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// IsURL reports whether ref names object storage (s3://...) rather than a local path.
func IsURL(ref string) bool { return strings.HasPrefix(ref, "s3://") }

// ParseURL parses s3://bucket[/prefix][/]. The bucket must be a valid S3 bucket name; the prefix must not
// contain empty, "." or ".." segments, whitespace or backslashes (it also names the local cache directory).
func ParseURL(s string) (URL, error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return URL{}, fmt.Errorf("object storage URL %q: want s3://bucket/prefix", s)
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	if !bucketRe.MatchString(bucket) || strings.Contains(bucket, "..") {
		return URL{}, fmt.Errorf("object storage URL %q: bucket %q must be 3-63 characters of a-z 0-9 . - starting and ending with a letter or digit", s, bucket)
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix != "" {
		if strings.ContainsAny(prefix, " \t\r\n\\") {
			return URL{}, fmt.Errorf("object storage URL %q: prefix %q must not contain whitespace or backslashes", s, prefix)
		}
		for _, seg := range strings.Split(prefix, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return URL{}, fmt.Errorf("object storage URL %q: prefix %q must not contain empty, \".\" or \"..\" segments", s, prefix)
			}
		}
	}
	return URL{Bucket: bucket, Prefix: prefix}, nil
}

// String returns s3://bucket/prefix.
func (u URL) String() string {
	if u.Prefix == "" {
		return "s3://" + u.Bucket
	}
	return "s3://" + u.Bucket + "/" + u.Prefix
}

// Join returns u with path segments appended to its prefix.
func (u URL) Join(elem ...string) URL {
	parts := make([]string, 0, len(elem)+1)
	if u.Prefix != "" {
		parts = append(parts, u.Prefix)
	}
	for _, e := range elem {
		if e = strings.Trim(e, "/"); e != "" {
			parts = append(parts, e)
		}
	}
	return URL{Bucket: u.Bucket, Prefix: strings.Join(parts, "/")}
}

// Key returns the object key of file under u's prefix.
func (u URL) Key(file string) string {
	if u.Prefix == "" {
		return file
	}
	return u.Prefix + "/" + file
}

// dirPrefix is u's prefix as a listing prefix: "" or "prefix/".
func (u URL) dirPrefix() string {
	if u.Prefix == "" {
		return ""
	}
	return u.Prefix + "/"
}

// Name returns the last segment of u's prefix ("" at the bucket root).
func (u URL) Name() string {
	return u.Prefix[strings.LastIndexByte(u.Prefix, '/')+1:]
}

// Parent returns u without its last prefix segment.
func (u URL) Parent() URL {
	i := strings.LastIndexByte(u.Prefix, '/')
	if i < 0 {
		return URL{Bucket: u.Bucket}
	}
	return URL{Bucket: u.Bucket, Prefix: u.Prefix[:i]}
}
