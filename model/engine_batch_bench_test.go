package model

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/sparrow-rl/sparrow/configs"
)

// issue19Model is the layout of issue 19's comparison (internal/bench/recipes/v32-issue19.yaml).
func issue19Model() configs.Model {
	m := configs.DefaultModel()
	m.VocabSize, m.HiddenSize, m.NumHiddenLayers, m.FirstKDenseReplace, m.NumAttentionHeads = 300, 256, 4, 1, 4
	m.QLoraRank, m.KVLoraRank, m.QKNopeHeadDim, m.QKRopeHeadDim, m.VHeadDim = 128, 64, 32, 16, 32
	m.IntermediateSize, m.MoEIntermediateSize, m.NRoutedExperts, m.NGroup, m.TopkGroup = 768, 256, 8, 2, 1
	m.NumExpertsPerTok, m.NSharedExperts = 2, 1
	m.IndexNHeads, m.IndexHeadDim, m.IndexTopk, m.MaxPositionEmbeddings = 4, 32, 64, 4096
	return m
}

// BenchmarkBatchStep times batched decode steps of issue 19's layout: per repetition, B sequences decode 256
// tokens after a 6-token prompt (each row's tokens drawn from its own generator, so rows route differently).
// Besides ns/op (one repetition), it reports the 10th percentile and the median of the step times in µs: on a
// shared machine the low percentile is the least disturbed measure of a step's cost; and the process CPU time
// per step (with GOMAXPROCS=1, the work of a step without any waiting between lanes).
func BenchmarkBatchStep(b *testing.B) {
	for _, B := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("B=%d", B), func(b *testing.B) {
			p := NewParams(issue19Model())
			p.Init(1234)
			e := NewEngine(p)
			const prompt, tokens = 6, 256
			prefix, err := e.NewSession(prompt + tokens)
			if err != nil {
				b.Fatal(err)
			}
			for t := range prompt {
				if err := prefix.Step(int32(40+t), nil); err != nil {
					b.Fatal(err)
				}
			}
			sess := make([]*Session, B)
			for i := range sess {
				if sess[i], err = e.NewSession(prompt + tokens); err != nil {
					b.Fatal(err)
				}
			}
			batch, err := e.NewBatch(B)
			if err != nil {
				b.Fatal(err)
			}
			in := make([]DecodeInput, B)
			var steps []float64
			var ru0, ru1 syscall.Rusage
			if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru0); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for r := 0; r < b.N; r++ {
				rng := rand.New(rand.NewPCG(uint64(r), 7))
				for i, s := range sess {
					if err := s.CopyFrom(prefix); err != nil {
						b.Fatal(err)
					}
					in[i] = DecodeInput{S: s}
				}
				for range tokens {
					for i := range in {
						in[i].Token = int32(rng.IntN(300))
					}
					t0 := time.Now()
					if err := batch.Step(in); err != nil {
						b.Fatal(err)
					}
					steps = append(steps, float64(time.Since(t0).Nanoseconds())/1e3)
				}
			}
			if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru1); err != nil {
				b.Fatal(err)
			}
			cpu := time.Duration(ru1.Utime.Nano() - ru0.Utime.Nano() + ru1.Stime.Nano() - ru0.Stime.Nano())
			b.ReportMetric(float64(cpu.Microseconds())/float64(len(steps)), "cpu-µs/step")
			slices.Sort(steps)
			b.ReportMetric(steps[len(steps)/10], "p10-µs/step")
			b.ReportMetric(steps[len(steps)/2], "p50-µs/step")
			b.ReportMetric(float64(B)*1e6/steps[len(steps)/10], "p10-tokens/s")
		})
	}
}
