// objects.go is single-object access for callers outside the checkpoint layout (the rollout weight sync of
// rollout/natsbus): PutBytes uploads bytes with their SHA-256 in the object's metadata (x-amz-meta-sha256),
// GetBytes downloads an object whole and checks its length and that SHA-256, Remove deletes one. All go
// through the Store's retry policy.

package objstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"
)

// ErrNotFound is wrapped by GetBytes's error when the object does not exist.
var ErrNotFound = errNotFound

// ErrChecksum is wrapped by GetBytes's error when an object's bytes do not match the SHA-256 in its metadata.
var ErrChecksum = errors.New("checksum mismatch")

// PutBytes uploads b as object name under u and returns its SHA-256 (hex), also stored in the metadata.
func (s *Store) PutBytes(ctx context.Context, u URL, name string, b []byte) (string, error) {
	sum := sha256.Sum256(b)
	sha := hex.EncodeToString(sum[:])
	if err := s.putBytes(ctx, u.Bucket, u.Key(name), b, sha); err != nil {
		return "", err
	}
	return sha, nil
}

// GetBytes downloads object name under u. It fails when the object is missing (wrapping ErrNotFound), when
// fewer or more bytes arrive than the object's size, or when the SHA-256 in its metadata (if any) does not
// match the bytes.
func (s *Store) GetBytes(ctx context.Context, u URL, name string) ([]byte, error) {
	key := u.Key(name)
	where := "s3://" + u.Bucket + "/" + key
	var b []byte
	err := s.withRetry(ctx, "download "+where, func(ctx context.Context) error {
		obj, err := s.client.GetObject(ctx, u.Bucket, key, minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer obj.Close()
		info, err := obj.Stat()
		if err != nil {
			if isNotFound(err) {
				return permanent(errNotFound)
			}
			return err
		}
		buf := bytes.NewBuffer(make([]byte, 0, info.Size))
		if _, err := io.Copy(buf, obj); err != nil {
			return err
		}
		if int64(buf.Len()) != info.Size {
			return fmt.Errorf("%d bytes received, the object has %d", buf.Len(), info.Size)
		}
		b = buf.Bytes()
		if want := userMeta(info, metaSHA256); want != "" {
			sum := sha256.Sum256(b)
			if got := hex.EncodeToString(sum[:]); got != want {
				return permanent(fmt.Errorf("%w: content SHA-256 %s, the metadata says %s", ErrChecksum, got, want))
			}
		}
		return nil
	})
	if errors.Is(err, errNotFound) {
		return nil, fmt.Errorf("%s: %w", where, ErrNotFound)
	}
	return b, err
}

// Remove deletes object name under u (a missing one is fine).
func (s *Store) Remove(ctx context.Context, u URL, name string) error {
	return s.remove(ctx, u.Bucket, u.Key(name))
}
