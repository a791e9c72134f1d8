// weights_s3_test.go: the weight sync over S3 (rl.bus.weights s3) against a real S3 server (versitygw,
// checkpoints/objstore/s3test) and the embedded NATS server: round trip, only the last 3 versions kept, a
// notice with the wrong hash refused, an object damaged in storage refused.
package natsbus

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/checkpoints/objstore/s3test"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/model"
)

func TestWeightSyncS3(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket("weights")
	srv.SetEnv(t)
	e := embedded(t, EmbeddedOptions{})
	ctx := context.Background()
	b := testBus()
	b.Transport, b.Weights, b.WeightsURL = "nats", "s3", "s3://weights/run1/rl"
	nc, err := Connect(ConnOptions{URL: e.URL(), Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	names := NewNames("w3", "rl")
	cfg := configs.Default().Model
	p := model.NewParams(cfg)
	p.Init(5)
	pub, err := NewWeightPublisher(ctx, nc, names, b, Policy{Attention: configs.AttentionDense}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	// the worker's bus section may say nothing about S3: the notice's location decides
	f, err := NewWeightFetcher(nc, names, testBus(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	for v := int64(0); v < 5; v++ {
		p.Data[0][0] = float32(v) + 0.5
		if _, err := pub.Publish(ctx, v, p); err != nil {
			t.Fatal(err)
		}
	}
	n, ok, err := f.Latest(ctx)
	if err != nil || !ok || n.Version != 4 {
		t.Fatalf("Latest = %+v %v %v, want version 4", n, ok, err)
	}
	if want := "s3://weights/run1/rl/v000000000004"; n.Object != want {
		t.Fatalf("notice names %q, want %q", n.Object, want)
	}
	q, _, err := f.Fetch(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	for i := range p.Data {
		if !bytes.Equal(f32bytes(p.Data[i]), f32bytes(q.Data[i])) {
			t.Fatalf("tensor %s differs after the S3 round trip", p.Specs[i].Name)
		}
	}
	// only the last 3 versions stay in the bucket
	for v, want := range []bool{false, false, true, true, true} {
		_, err := os.Stat(srv.ObjectPath("weights", "run1/rl/v00000000000"+string(rune('0'+v))))
		if got := err == nil; got != want {
			t.Errorf("version %d in the bucket: %v, want %v (stat: %v)", v, got, want, err)
		}
	}
	cases := []struct {
		name   string
		notice Notice
		damage bool // overwrite the object's bytes in the server's storage
		want   string
	}{
		{"wrong hash in the notice", Notice{Version: 4, Object: n.Object, Bytes: n.Bytes, SHA256: strings.Repeat("0", 64)}, false, "SHA-256"},
		{"deleted old version", Notice{Version: 0, Object: "s3://weights/run1/rl/v000000000000", Bytes: n.Bytes, SHA256: n.SHA256}, false, "not found"},
		{"not an s3 location", Notice{Version: 4, Object: "s3://weights", Bytes: n.Bytes, SHA256: n.SHA256}, false, "not s3://bucket/prefix/object"},
		{"object damaged in storage", n, true, "checksum mismatch"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.damage {
				path := srv.ObjectPath("weights", "run1/rl/v000000000004")
				raw, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				raw[len(raw)-1] ^= 0xff
				if err := os.WriteFile(path, raw, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, _, err := f.Fetch(ctx, c.notice)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Fetch(%+v) = %v, want an error with %q", c.notice, err, c.want)
			}
		})
	}
}
