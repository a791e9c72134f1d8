// weights.go: weight sync. After each update the learner writes the weights as object v<version> (a JSON
// header with the model config and tensor names and shapes, then the float32 values little-endian in
// model.Specs order) to a weightStore: the stage's NATS Object Store by default, or with rl.bus.weights s3
// the S3 prefix rl.bus.weights_url (checkpoints/objstore, SHA-256 in the object metadata). It then publishes
// a small notice {version, object (the name, or the s3:// URL), sha256, bytes} on
// sparrow.<run>.weights.<stage> (a stream that keeps the last one, so a worker that starts late or
// reconnects reads it). A worker fetches the object from the store the notice names, with a deadline sized
// for its length, checks the SHA-256 and the tensor layout, and only then swaps the weights in: a partially
// received or corrupted version is never run. The last notice of a stage says done, which ends the workers.
//
// The header also carries how the policy runs (Policy: dense or DeepSeek Sparse Attention with its top-k, and
// whether workers record the selections for Keep Selection), under the same SHA-256 as the values: a worker
// decodes as the learner trains because it learns the attention from the weights themselves, and refuses a
// version whose policy differs from its own config or from the version it runs.

package natsbus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sparrow-rl/sparrow/checkpoints/objstore"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/model"
)

// Notice announces a weights version.
type Notice struct {
	Version int64  `json:"version"`
	Object  string `json:"object,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
	Bytes   int64  `json:"bytes,omitempty"`
	// Done says the stage is over: workers finish and exit.
	Done bool `json:"done,omitempty"`
}

const weightsMagic = "SPARROW-WEIGHTS/1\n"

type weightsHeader struct {
	Model   configs.Model `json:"model"`
	Policy  Policy        `json:"policy"`
	Tensors []tensorInfo  `json:"tensors"`
}

// Policy is how the learner's policy runs, which its rollout workers must follow: the attention
// (configs.AttentionDense, or AttentionSparse with SparseTopK keys per query) and, with rl.keep_selection,
// the recording of every position's selected keys (dsa_topk) for the learner to replay.
type Policy struct {
	Attention     string `json:"attention"`
	SparseTopK    int    `json:"sparse_topk,omitempty"`
	KeepSelection bool   `json:"keep_selection,omitempty"`
}

// Sparse says whether the policy runs DeepSeek Sparse Attention.
func (p Policy) Sparse() bool { return p.Attention == configs.AttentionSparse }

// Validate checks that the fields fit together.
func (p Policy) Validate() error {
	switch p.Attention {
	case configs.AttentionDense:
		if p.SparseTopK != 0 || p.KeepSelection {
			return fmt.Errorf("natsbus: policy: dense attention with sparse_topk %d and keep_selection %v (both are for sparse attention)", p.SparseTopK, p.KeepSelection)
		}
	case configs.AttentionSparse:
		if p.SparseTopK <= 0 {
			return fmt.Errorf("natsbus: policy: sparse attention needs sparse_topk > 0, got %d", p.SparseTopK)
		}
	case "":
		return errors.New("natsbus: policy: no attention (weights published by a learner that does not say whether its policy is dense or sparse)")
	default:
		return fmt.Errorf("natsbus: policy: attention %q, want %q or %q", p.Attention, configs.AttentionDense, configs.AttentionSparse)
	}
	return nil
}

func (p Policy) String() string {
	if !p.Sparse() {
		return p.Attention
	}
	return fmt.Sprintf("sparse (top-%d, keep_selection %v)", p.SparseTopK, p.KeepSelection)
}

type tensorInfo struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
}

// EncodeWeights serialises parameters and the policy they run (magic, uint32 header length, JSON header,
// float32 LE values).
func EncodeWeights(p *model.Params, pol Policy) []byte {
	h := weightsHeader{Model: p.Config, Policy: pol}
	n := 0
	for i, sp := range p.Specs {
		h.Tensors = append(h.Tensors, tensorInfo{Name: sp.Name, Shape: sp.Shape})
		n += len(p.Data[i])
	}
	hj, _ := json.Marshal(h)
	out := make([]byte, 0, len(weightsMagic)+4+len(hj)+4*n)
	out = append(out, weightsMagic...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(hj)))
	out = append(out, hj...)
	for _, d := range p.Data {
		for _, v := range d {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
		}
	}
	return out
}

// DecodeWeights parses EncodeWeights's output into fresh parameters and their policy, checking the layout
// against the model config it names and the policy's fields.
func DecodeWeights(b []byte) (*model.Params, Policy, error) {
	if !bytes.HasPrefix(b, []byte(weightsMagic)) || len(b) < len(weightsMagic)+4 {
		return nil, Policy{}, errors.New("natsbus: weights: not a Sparrow weights object")
	}
	b = b[len(weightsMagic):]
	hl := int(binary.LittleEndian.Uint32(b))
	if hl > len(b)-4 {
		return nil, Policy{}, fmt.Errorf("natsbus: weights: header of %d bytes in %d", hl, len(b)-4)
	}
	var h weightsHeader
	if err := json.Unmarshal(b[4:4+hl], &h); err != nil {
		return nil, Policy{}, fmt.Errorf("natsbus: weights: header: %w", err)
	}
	if err := h.Policy.Validate(); err != nil {
		return nil, Policy{}, fmt.Errorf("natsbus: weights: header: %w", err)
	}
	specs := model.Specs(h.Model)
	if len(specs) != len(h.Tensors) {
		return nil, Policy{}, fmt.Errorf("natsbus: weights: %d tensors, the model config has %d", len(h.Tensors), len(specs))
	}
	total := 0
	for i, sp := range specs {
		if h.Tensors[i].Name != sp.Name || !slices.Equal(h.Tensors[i].Shape, sp.Shape) {
			return nil, Policy{}, fmt.Errorf("natsbus: weights: tensor %d is %s %v, the model config says %s %v", i, h.Tensors[i].Name, h.Tensors[i].Shape, sp.Name, sp.Shape)
		}
		total += sp.Size()
	}
	vals := b[4+hl:]
	if len(vals) != 4*total {
		return nil, Policy{}, fmt.Errorf("natsbus: weights: %d value bytes, want %d", len(vals), 4*total)
	}
	p := model.NewParams(h.Model)
	off := 0
	for i := range p.Data {
		d := p.Data[i]
		for j := range d {
			d[j] = math.Float32frombits(binary.LittleEndian.Uint32(vals[off:]))
			off += 4
		}
	}
	return p, h.Policy, nil
}

func sum256(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// transferDeadline is the deadline of one object transfer: 30 s plus 1 s per 2 MiB (object store gets ran
// at ~25 MB/s on file storage; the 5 s JetStream default would cut large downloads).
func transferDeadline(n int64) time.Duration {
	return 30*time.Second + time.Duration(n/(2<<20))*time.Second
}

// weightStore is where the weight objects live: the stage's NATS Object Store or an S3 prefix. put returns
// the location a notice carries (the object name, or its s3:// URL); get fetches a location whole (a
// missing object is a permanent error); remove deletes one (missing is fine).
type weightStore interface {
	put(ctx context.Context, name string, b []byte) (location string, err error)
	get(ctx context.Context, location string) ([]byte, error)
	remove(ctx context.Context, location string) error
}

// natsStore keeps the weights in the stage's NATS Object Store (opened on first use: the learner's Setup
// creates it, a worker may start first).
type natsStore struct {
	js     jetstream.JetStream
	bucket string
	obs    jetstream.ObjectStore
	stream jetstream.Stream // the store's stream, OBJ_<bucket>
}

func (s *natsStore) open(ctx context.Context) error {
	if s.obs != nil {
		return nil
	}
	obs, err := s.js.ObjectStore(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("object store %s: %w", s.bucket, err)
	}
	st, err := s.js.Stream(ctx, "OBJ_"+s.bucket)
	if err != nil {
		return fmt.Errorf("object store %s: %w", s.bucket, err)
	}
	s.obs, s.stream = obs, st
	return nil
}

func (s *natsStore) put(ctx context.Context, name string, b []byte) (string, error) {
	if err := s.open(ctx); err != nil {
		return "", err
	}
	_, err := s.obs.PutBytes(ctx, name, b)
	return name, err
}

// get reads an object chunk by chunk with direct gets (the next message on the object's chunk subject), not
// through a consumer as jetstream.ObjectStore.Get does: a worker then needs no right to create consumers,
// which would let it publish anywhere (the server does not check a consumer's deliver subject against its
// creator's permissions).
func (s *natsStore) get(ctx context.Context, location string) ([]byte, error) {
	if err := s.open(ctx); err != nil {
		return nil, err
	}
	info, err := s.obs.GetInfo(ctx, location)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, permanent(err)
	}
	if err != nil {
		return nil, err
	}
	subject := "$O." + s.bucket + ".C." + info.NUID
	b := make([]byte, 0, info.Size)
	h := sha256.New()
	seq := uint64(1)
	for i := range info.Chunks {
		m, err := s.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) { // deleted while read: a newer version replaced it
			return nil, permanent(fmt.Errorf("object %s: chunk %d of %d is gone", location, i+1, info.Chunks))
		}
		if err != nil {
			return nil, fmt.Errorf("object %s: chunk %d of %d: %w", location, i+1, info.Chunks, err)
		}
		b = append(b, m.Data...)
		h.Write(m.Data)
		seq = m.Sequence + 1
	}
	if uint64(len(b)) != info.Size || jetstream.GetObjectDigestValue(h) != info.Digest {
		return nil, fmt.Errorf("object %s: %d bytes read, digest %s; its info says %d bytes, %s", location, len(b), jetstream.GetObjectDigestValue(h), info.Size, info.Digest)
	}
	return b, nil
}

func (s *natsStore) remove(ctx context.Context, location string) error {
	if err := s.open(ctx); err != nil {
		return err
	}
	if err := s.obs.Delete(ctx, location); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return err
	}
	return nil
}

// s3Store keeps the weights under an s3://bucket/prefix (rl.bus.weights_url) through checkpoints/objstore,
// the SHA-256 in each object's metadata; endpoint and credentials come from the AWS_* environment.
type s3Store struct {
	st  *objstore.Store
	dir objstore.URL
}

func newS3Store(weightsURL string, log *slog.Logger) (*s3Store, error) {
	u, err := objstore.ParseURL(weightsURL)
	if err != nil {
		return nil, fmt.Errorf("rl.bus.weights_url: %w", err)
	}
	cfg := objstore.ConfigFromEnv()
	cfg.Log = log
	st, err := objstore.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("rl.bus.weights_url %s: %w", u, err)
	}
	return &s3Store{st: st, dir: u}, nil
}

func (s *s3Store) put(ctx context.Context, name string, b []byte) (string, error) {
	if _, err := s.st.PutBytes(ctx, s.dir, name, b); err != nil {
		return "", err
	}
	return s.dir.Join(name).String(), nil
}

// split turns a location s3://bucket/prefix/name into its directory and name.
func (s *s3Store) split(location string) (objstore.URL, string, error) {
	u, err := objstore.ParseURL(location)
	if err != nil || u.Prefix == "" {
		return objstore.URL{}, "", permanent(fmt.Errorf("weights location %q: not s3://bucket/prefix/object", location))
	}
	return u.Parent(), u.Name(), nil
}

func (s *s3Store) get(ctx context.Context, location string) ([]byte, error) {
	dir, name, err := s.split(location)
	if err != nil {
		return nil, err
	}
	b, err := s.st.GetBytes(ctx, dir, name)
	if errors.Is(err, objstore.ErrNotFound) || errors.Is(err, objstore.ErrChecksum) {
		return nil, permanent(err)
	}
	return b, err
}

func (s *s3Store) remove(ctx context.Context, location string) error {
	dir, name, err := s.split(location)
	if err != nil {
		return err
	}
	return s.st.Remove(ctx, dir, name)
}

// WeightPublisher is the learner's side of the weight sync.
type WeightPublisher struct {
	js     jetstream.JetStream
	store  weightStore
	names  Names
	policy Policy
	log    *slog.Logger
	wait   time.Duration
	kept   []string
	// LastBytes and LastPut describe the last publication (for metrics and the benchmark).
	LastBytes int64
	LastPut   time.Duration
}

// NewWeightPublisher prepares the notices' stream (Setup creates it) and the weights' store: the stage's
// NATS Object Store, or with rl.bus.weights s3 the S3 prefix rl.bus.weights_url. Every version it publishes
// carries pol, the policy the workers must run.
func NewWeightPublisher(ctx context.Context, nc *nats.Conn, names Names, b configs.Bus, pol Policy, log *slog.Logger) (*WeightPublisher, error) {
	if err := pol.Validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsbus: %w", err)
	}
	if err := Setup(ctx, js, names, b, log); err != nil {
		return nil, err
	}
	p := &WeightPublisher{js: js, names: names, policy: pol, log: log, wait: secs(b.WaitS)}
	if b.Weights == "s3" {
		st, err := newS3Store(b.WeightsURL, log)
		if err != nil {
			return nil, fmt.Errorf("natsbus: %w", err)
		}
		p.store = st
		return p, nil
	}
	ns := &natsStore{js: js, bucket: names.Bucket()}
	p.store = ns
	err = retry(ctx, log, "opening object store "+names.Bucket(), p.wait, ns.open)
	return p, err
}

// Publish stores a version and announces it; versions older than the last three are deleted.
func (p *WeightPublisher) Publish(ctx context.Context, version int64, params *model.Params) (Notice, error) {
	t0 := time.Now()
	b := EncodeWeights(params, p.policy)
	name := fmt.Sprintf("v%012d", version)
	n := Notice{Version: version, Object: name, SHA256: sum256(b), Bytes: int64(len(b))}
	err := retry(ctx, p.log, "storing weights "+name, p.wait, func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), transferDeadline(n.Bytes))
		defer cancel()
		var err error
		n.Object, err = p.store.put(cctx, name, b)
		return err
	})
	if err != nil {
		return n, err
	}
	if err := p.notify(ctx, n); err != nil {
		return n, err
	}
	p.LastBytes, p.LastPut = n.Bytes, time.Since(t0)
	p.kept = append(p.kept, n.Object)
	for len(p.kept) > 3 {
		old := p.kept[0]
		p.kept = p.kept[1:]
		if err := p.store.remove(ctx, old); err != nil {
			p.log.Warn("natsbus: deleting an old weights object failed", "object", old, "err", err)
		}
	}
	p.log.Debug("natsbus: weights published", "version", version, "object", n.Object, "bytes", n.Bytes, "seconds", round1(p.LastPut.Seconds()))
	return n, nil
}

// Done announces the end of the stage.
func (p *WeightPublisher) Done(ctx context.Context, version int64) error {
	return p.notify(ctx, Notice{Version: version, Done: true})
}

func (p *WeightPublisher) notify(ctx context.Context, n Notice) error {
	body, _ := json.Marshal(n)
	return retry(ctx, p.log, "announcing weights", p.wait, func(ctx context.Context) error {
		_, err := p.js.Publish(ctx, p.names.WeightsSubject(), body)
		return err
	})
}

// WeightFetcher is the workers' side of the weight sync. The store is chosen per notice: an s3:// location
// is read from S3 (endpoint and credentials from the AWS_* environment), a plain object name from the
// stage's NATS Object Store.
type WeightFetcher struct {
	js    jetstream.JetStream
	names Names
	log   *slog.Logger
	wait  time.Duration
	nats  *natsStore
	s3    *s3Store
	// LastGet is the duration of the last fetch (download, hash, decode).
	LastGet time.Duration
}

// NewWeightFetcher prepares a fetcher; the stores are opened on first use (the learner creates them).
func NewWeightFetcher(nc *nats.Conn, names Names, b configs.Bus, log *slog.Logger) (*WeightFetcher, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsbus: %w", err)
	}
	return &WeightFetcher{js: js, names: names, log: log, wait: secs(b.WaitS), nats: &natsStore{js: js, bucket: names.Bucket()}}, nil
}

// storeFor returns the store that holds a notice's object.
func (f *WeightFetcher) storeFor(n Notice) (weightStore, error) {
	if !objstore.IsURL(n.Object) {
		return f.nats, nil
	}
	if f.s3 == nil {
		u, err := objstore.ParseURL(n.Object)
		if err != nil {
			return nil, fmt.Errorf("natsbus: weights notice of version %d: %w", n.Version, err)
		}
		st, err := newS3Store(u.Parent().String(), f.log)
		if err != nil {
			return nil, fmt.Errorf("natsbus: weights notice of version %d: %w", n.Version, err)
		}
		f.s3 = st
	}
	return f.s3, nil
}

// Latest returns the newest notice, or ok = false when none was published yet.
func (f *WeightFetcher) Latest(ctx context.Context) (n Notice, ok bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := f.js.Stream(cctx, f.names.WeightsStream())
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return n, false, nil
		}
		return n, false, err
	}
	m, err := st.GetLastMsgForSubject(cctx, f.names.WeightsSubject())
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, false, nil
		}
		return n, false, err
	}
	if err := json.Unmarshal(m.Data, &n); err != nil {
		return n, false, fmt.Errorf("natsbus: weights notice: %w", err)
	}
	return n, true, nil
}

// Fetch downloads, checks and decodes the version a notice names, and the policy it runs.
func (f *WeightFetcher) Fetch(ctx context.Context, n Notice) (*model.Params, Policy, error) {
	t0 := time.Now()
	store, err := f.storeFor(n)
	if err != nil {
		return nil, Policy{}, err
	}
	var b []byte
	err = retry(ctx, f.log, "fetching weights "+n.Object, f.wait, func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), transferDeadline(n.Bytes))
		defer cancel()
		var err error
		b, err = store.get(cctx, n.Object)
		return err
	})
	if err != nil {
		return nil, Policy{}, err
	}
	if int64(len(b)) != n.Bytes || sum256(b) != n.SHA256 {
		return nil, Policy{}, fmt.Errorf("natsbus: weights %s: %d bytes with SHA-256 %.12s…, the notice says %d bytes, %.12s…", n.Object, len(b), sum256(b), n.Bytes, n.SHA256)
	}
	p, pol, err := DecodeWeights(b)
	if err != nil {
		return nil, Policy{}, fmt.Errorf("natsbus: weights %s: %w", n.Object, err)
	}
	f.LastGet = time.Since(t0)
	return p, pol, nil
}
