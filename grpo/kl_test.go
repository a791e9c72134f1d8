// Tests of the KL estimators: hand-computed values and derivatives, a
// finite-difference check of every derivative (the unbiased one includes ∂ρ/∂ℓ),
// and an exact check over a small vocabulary that the importance-weighted k3
// of Eq. 7 is unbiased for KL(π_θ‖π_ref) in value and gradient when tokens come
// from π_old, while plain k3 is biased off-policy and, even on-policy, follows
// the gradient of the reverse direction KL(π_ref‖π_θ).
package grpo

import (
	"math"
	"strings"
	"testing"
)

func TestKLTermGolden(t *testing.T) {
	tests := []struct {
		name           string
		logp, old, ref float64
		kind           KLKind
		est, d         float64
	}{
		// d = ℓ − ℓ_ref = −1 − (−1.1) = 0.1 (0.10000000000000009 in float64)
		{"k1", -1, -1.2, -1.1, KLK1, 0.10000000000000009, 1},
		// ½·0.1² = 0.005; ∂ = d = 0.1
		{"k2", -1, -1.2, -1.1, KLK2, 0.005000000000000009, 0.10000000000000009},
		// u = e^{−0.1} = 0.9048374180359595; k3 = u − ln u − 1 = 0.9048374180359595 + 0.1 − 1 = 0.0048374180359596;
		// ∂ = 1 − u = 0.09516258196404048
		{"k3", -1, -1.2, -1.1, KLK3, 0.004837418035959606, 0.09516258196404048},
		// ρ = e^{−1+1.2} = e^{0.2} = 1.2214027581601699; D = ρ·k3 = 1.2214027581601699·0.0048374180359596 = 0.005908435731494815;
		// ∂ = ρ·d = 1.2214027581601699·0.1 = 0.12214027581601710
		{"unbiased", -1, -1.2, -1.1, KLUnbiased, 0.005908435731494815, 0.1221402758160171},
		{"none", -1, -1.2, -1.1, KLNone, 0, 0},
		// π_θ ≪ π_ref: d = −5 − (−1) = −4, u = e^4 = 54.598150033144236
		{"k1 unlikely", -5, -5, -1, KLK1, -4, 1},
		{"k2 unlikely", -5, -5, -1, KLK2, 8, -4},
		// k3 = 54.598150033144236 − 4 − 1 = 49.598150033144236; ∂ = 1 − u = −53.598150033144236 (unbounded as u grows)
		{"k3 unlikely", -5, -5, -1, KLK3, 49.598150033144236, -53.598150033144236},
		// ρ = 1: same estimate, but ∂ = ρ·d = −4 (bounded by the log-ratio)
		{"unbiased unlikely on-policy", -5, -5, -1, KLUnbiased, 49.598150033144236, -4},
		// ρ = e^{−0.5} = 0.6065306597126334: D = 0.6065306597126334·49.598150033144236 = 30.082798660129146; ∂ = −4ρ = −2.4261226388505337
		{"unbiased unlikely off-policy", -5, -4.5, -1, KLUnbiased, 30.082798660129146, -2.4261226388505337},
		// at π_θ = π_ref every estimator and every derivative but k1's is 0
		{"k3 at ref", -0.7, -0.2, -0.7, KLK3, 0, 0},
		{"unbiased at ref", -0.7, -0.2, -0.7, KLUnbiased, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			est, d := tc.kind.Term(tc.logp, tc.old, tc.ref)
			requireNear(t, "estimate", est, tc.est)
			requireNear(t, "derivative", d, tc.d)
		})
	}
}

// TestKLTermFiniteDifference checks ∂D̂/∂ℓ of every estimator against a central
// difference on a grid of (ℓ − ℓ_ref, ℓ − ℓ_old).
func TestKLTermFiniteDifference(t *testing.T) {
	const h = 1e-6
	for _, k := range []KLKind{KLK1, KLK2, KLK3, KLUnbiased} {
		for dr := -3.0; dr <= 3.0; dr += 0.25 {
			for _, do := range []float64{-1, -0.1, 0, 0.3, 1.2} {
				logp := -1.7
				ref, old := logp-dr, logp-do
				_, d := k.Term(logp, old, ref)
				ep, _ := k.Term(logp+h, old, ref)
				em, _ := k.Term(logp-h, old, ref)
				if fd := (ep - em) / (2 * h); !near(d, fd, 1e-8, 1e-7) {
					t.Fatalf("%s: ℓ−ℓ_ref %g ℓ−ℓ_old %g: derivative %.12g, finite difference %.12g", k, dr, do, d, fd)
				}
			}
		}
	}
}

// TestK3Precision checks k3 = e^{−d} − 1 + d against 50-digit values (Python
// decimal) on both sides of the series/expm1 switch at |d| = 0.01, including
// tiny d where the naive u − ln u − 1 loses every digit to cancellation.
func TestK3Precision(t *testing.T) {
	tests := []struct{ d, want float64 }{
		{1e-9, 4.999999998333333e-19}, // d²/2 − d³/6 = 5e-19 − 1.67e-28
		{0.005, 1.2479192682313352e-05},
		{-0.0099, 4.916711754213867e-05},
		{0.0101, 5.083371587730133e-05},
		{0.5, 0.10653065971263342},
	}
	for _, tc := range tests {
		est, _ := KLK3.Term(tc.d, 0, 0)
		if !near(est, tc.want, 0, 1e-13) {
			t.Errorf("k3(%g) = %.17g, want %.17g", tc.d, est, tc.want)
		}
	}
}

func softmax(z []float64) []float64 {
	m := math.Inf(-1)
	for _, x := range z {
		m = math.Max(m, x)
	}
	p := make([]float64, len(z))
	var s float64
	for i, x := range z {
		p[i] = math.Exp(x - m)
		s += p[i]
	}
	for i := range p {
		p[i] /= s
	}
	return p
}

// exactKL is KL(π_θ‖π_ref) = Σ_v π_θ(v)·ln(π_θ(v)/π_ref(v)) for logits zθ, zRef.
func exactKL(zθ, zRef []float64) float64 {
	p, q := softmax(zθ), softmax(zRef)
	var kl float64
	for v := range p {
		kl += p[v] * math.Log(p[v]/q[v])
	}
	return kl
}

// expectOld returns E_{v~π_old}[D̂(v)] and E_{v~π_old}[∂D̂(v)/∂z] (through
// ∂ℓ_v/∂z_j = 1[v=j] − π_θ(j)), exactly, by summing over the vocabulary.
func expectOld(k KLKind, zθ, zOld, zRef []float64) (float64, []float64) {
	p, o, q := softmax(zθ), softmax(zOld), softmax(zRef)
	var e float64
	g := make([]float64, len(zθ))
	for v := range p {
		est, d := k.Term(math.Log(p[v]), math.Log(o[v]), math.Log(q[v]))
		e += o[v] * est
		for j := range g {
			dl := -p[j]
			if j == v {
				dl++
			}
			g[j] += o[v] * d * dl
		}
	}
	return e, g
}

func TestUnbiasedKLIsUnbiased(t *testing.T) {
	zθ := []float64{0.3, -1.2, 2.0, 0.0, -0.4}
	zOld := []float64{0.9, -0.3, 1.1, 0.5, -2.0} // a stale sampler
	zRef := []float64{-0.5, 0.4, 1.5, -1.0, 0.2}
	kl := exactKL(zθ, zRef)
	// the exact gradient of KL(π_θ‖π_ref) with respect to the logits, by central differences
	const h = 1e-6
	want := make([]float64, len(zθ))
	for j := range zθ {
		zp := append([]float64(nil), zθ...)
		zm := append([]float64(nil), zθ...)
		zp[j] += h
		zm[j] -= h
		want[j] = (exactKL(zp, zRef) - exactKL(zm, zRef)) / (2 * h)
	}

	e, g := expectOld(KLUnbiased, zθ, zOld, zRef)
	if !near(e, kl, 1e-14, 1e-12) {
		t.Fatalf("E_old[ρ·k3] = %.15g, KL = %.15g", e, kl)
	}
	for j := range g {
		if !near(g[j], want[j], 1e-8, 1e-6) {
			t.Fatalf("E_old[∂(ρ·k3)/∂z_%d] = %.10g, ∂KL/∂z = %.10g", j, g[j], want[j])
		}
	}

	// Plain k3 has an unbiased value only on-policy (E_θ[k3] = KL), and even then
	// its pathwise gradient is not ∇KL(π_θ‖π_ref): E_θ[(1 − u)∇ℓ] = −Σ π_ref ∇ln π_θ
	// = ∇KL(π_ref‖π_θ), the other direction. The weight ρ (with ∂ρ/∂ℓ = ρ) is what
	// restores the gradient, even at π_old = π_θ.
	eOn, gOn := expectOld(KLK3, zθ, zθ, zRef)
	if !near(eOn, kl, 1e-14, 1e-12) {
		t.Fatalf("E_θ[k3] = %.15g, KL = %.15g", eOn, kl)
	}
	for j := range gOn {
		zp := append([]float64(nil), zθ...)
		zm := append([]float64(nil), zθ...)
		zp[j] += h
		zm[j] -= h
		rev := (exactKL(zRef, zp) - exactKL(zRef, zm)) / (2 * h)
		if !near(gOn[j], rev, 1e-8, 1e-6) {
			t.Fatalf("E_θ[∂k3/∂z_%d] = %.10g, ∂KL(π_ref‖π_θ)/∂z = %.10g", j, gOn[j], rev)
		}
	}
	_, gOnUnb := expectOld(KLUnbiased, zθ, zθ, zRef)
	for j := range gOnUnb {
		if !near(gOnUnb[j], want[j], 1e-8, 1e-6) {
			t.Fatalf("on-policy E_θ[∂(ρ·k3)/∂z_%d] = %.10g, ∂KL/∂z = %.10g", j, gOnUnb[j], want[j])
		}
	}
	eOff, _ := expectOld(KLK3, zθ, zOld, zRef)
	if math.Abs(eOff-kl) < 1e-2 {
		t.Fatalf("E_old[k3] = %.6g is within 1e-2 of KL %.6g: the test distributions show no bias", eOff, kl)
	}
	var gap float64
	for j := range gOn {
		gap = math.Max(gap, math.Abs(gOn[j]-want[j]))
	}
	if gap < 1e-2 {
		t.Fatalf("E_θ[∂k3/∂z] is within %.3g of ∂KL(π_θ‖π_ref)/∂z: the test distributions show no difference", gap)
	}
}

func TestParseKL(t *testing.T) {
	for _, s := range []string{"none", "k1", "k2", "k3", "unbiased"} {
		if k, err := ParseKL(s); err != nil || string(k) != s {
			t.Errorf("ParseKL(%q) = %q, %v", s, k, err)
		}
	}
	for _, s := range []string{"", "K3", "low_var_kl", "kl"} {
		if _, err := ParseKL(s); err == nil || !strings.Contains(err.Error(), "want one of") {
			t.Errorf("ParseKL(%q): err = %v", s, err)
		}
	}
}
