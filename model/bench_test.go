package model

import (
	"testing"

	"github.com/sparrow-rl/sparrow/configs"
)

func BenchmarkTrainStepDefault(b *testing.B) {
	cfg := configs.DefaultModel()
	p := NewParams(cfg)
	p.Init(1)
	const B, T = 16, 128
	g, err := NewGraph[float32](cfg, p.Data, GraphOptions{B: B, T: T})
	if err != nil {
		b.Fatal(err)
	}
	in := StepInput{Tokens: make([]int32, B*T), Targets: make([]int32, B*T), Weights: make([]float32, B*T), Lengths: make([]int32, B), Scale: 1.0 / (B * T)}
	for i := range in.Tokens {
		in.Tokens[i] = int32(i * 7 % 256)
		in.Targets[i] = int32(i * 13 % 256)
		in.Weights[i] = 1
	}
	for i := range in.Lengths {
		in.Lengths[i] = T
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := g.Run(in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(B*T*b.N)/b.Elapsed().Seconds(), "tokens/s")
}
