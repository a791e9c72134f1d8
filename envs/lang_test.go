// Tests of the tiny language: semantics, canonical formatting, every limit (steps, depth, variables,
// output, source), syntax and runtime errors, and a fuzz test that the interpreter never panics or hangs.
package envs

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	cases := []struct {
		src, out string
	}{
		{"print 2 + 3 * 4", "14\n"},
		{"print (2 + 3) * 4", "20\n"},
		{"print 10 - 3 - 2", "5\n"},
		{"print 10 - (3 - 2)", "9\n"},
		{"print 7 / 2; print -7 / 2; print -7 % 3; print 7 % -3", "3\n-3\n-1\n1\n"},
		{"print 3 < 4; print 4 < 3; print 3 <= 3; print 3 >= 4; print 2 == 2; print 2 != 2", "1\n0\n1\n0\n1\n0\n"},
		{"print --5; print -(2 - 9)", "5\n7\n"},
		{"x = 5 # a comment\n\n  y = x * x ; print y", "25\n"},
		{"s = 0\ni = 1\nwhile i <= 10 {\n  s = s + i\n  i = i + 1\n}\nprint s", "55\n"},
		{"x = 7\nif x > 5 { print 1 } else { print 2 }", "1\n"},
		{"x = 3\nif x > 5 { print 1 } else if x > 2 { print 2 } else { print 3 }", "2\n"},
		{"x = 1\nif x > 5 { print 1 } else if x > 2 { print 2 } else { print 3 }", "3\n"},
		{"if 0 { print 1 }\nprint 9", "9\n"},
		{"n = 5; f = 1; while n { f = f * n; n = n - 1 }; print f", "120\n"},
		{"print 9223372036854775807", "9223372036854775807\n"},
		{"print -9223372036854775807 - 1", "-9223372036854775808\n"},
		{"", ""},
		{"while 0 {}", ""},
	}
	for _, tc := range cases {
		res, err := Run(tc.src, Limits{})
		if err != nil || res.Output != tc.out {
			t.Errorf("Run(%q) = %q, %v; want %q", tc.src, res.Output, err, tc.out)
		}
	}
}

func TestRunErrors(t *testing.T) {
	deep := func(open, close string, n int) string {
		return strings.Repeat(open, n) + "1" + strings.Repeat(close, n)
	}
	blocks := "x = 1\n" + strings.Repeat("if 1 {\n", 70) + "print x\n" + strings.Repeat("}\n", 70)
	var manyVars strings.Builder
	for i := range 65 {
		manyVars.WriteString("v" + strings.Repeat("x", i) + " = 1\n")
	}
	cases := []struct {
		src  string
		want error
		msg  string
		out  string // printed before the error
	}{
		{"print x", ErrRuntime, "line 1: runtime error: x is not set", ""},
		{"print 1\nprint 1 / 0", ErrRuntime, "line 2: runtime error: division by zero", "1\n"},
		{"print 5 % 0", ErrRuntime, "division by zero", ""},
		{"print 9223372036854775807 + 1", ErrRuntime, "overflow in 9223372036854775807 + 1", ""},
		{"print -9223372036854775807 - 2", ErrRuntime, "overflow", ""},
		{"print 4294967296 * 4294967296", ErrRuntime, "overflow", ""},
		{"x = -9223372036854775807 - 1; print -x", ErrRuntime, "overflow in -(", ""},
		{"x = -9223372036854775807 - 1; print x / -1", ErrRuntime, "overflow", ""},
		{"x = -9223372036854775807 - 1; print x * -1", ErrRuntime, "overflow", ""},
		{"print 9223372036854775808", ErrSyntax, "integer 9223372036854775808 is out of range", ""},
		{"x = ", ErrSyntax, "line 1: syntax error: want a number, a name, - or (, got \"end of program\"", ""},
		{"print", ErrSyntax, "syntax error", ""},
		{"if 1 { print 1", ErrSyntax, "missing }", ""},
		{"}", ErrSyntax, "unexpected }", ""},
		{"x + 1", ErrSyntax, "want = after x", ""},
		{"print 1 2", ErrSyntax, "unexpected \"2\" after a statement", ""},
		{"print @", ErrSyntax, "unexpected character '@'", ""},
		{"print (1", ErrSyntax, "want ), got", ""},
		{"while 1 print 1", ErrSyntax, "want {", ""},
		{"else { }", ErrSyntax, "unexpected \"else\"", ""},
		{"print é", ErrSyntax, "unexpected character", ""},
		{"print 1 < 2 < 3", ErrSyntax, "after a statement", ""},
		{"while 1 { }", ErrStepLimit, "step limit exceeded (100000)", ""},
		{"x = 0\nwhile 1 {\n  x = x + 1\n}", ErrStepLimit, "step limit exceeded", ""},
		{"while 1 { print 123456789 }", ErrOutputLimit, "output limit exceeded (4096 bytes)", strings.Repeat("123456789\n", 409)},
		{"print " + deep("(", ")", 65), ErrDepthLimit, "nesting depth limit exceeded (64)", ""},
		{"print " + deep("(", ")", 100000), ErrMemoryLimit, "source of 200007 bytes", ""},
		{"print " + strings.Repeat("-", 70) + "1", ErrDepthLimit, "depth", ""},
		{"print 1" + strings.Repeat(" + 1", 70), ErrDepthLimit, "depth", ""},
		{blocks, ErrDepthLimit, "line 66: nesting depth limit exceeded", ""},
		{manyVars.String(), ErrMemoryLimit, "line 65: memory limit exceeded: more than 64 variables", ""},
	}
	for _, tc := range cases {
		start := time.Now()
		res, err := Run(tc.src, Limits{})
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) || res.Output != tc.out {
			t.Errorf("Run(%.60q) = %q, %v; want %v containing %q after %q", tc.src, res.Output, err, tc.want, tc.msg, tc.out)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Run(%.60q) took %v", tc.src, d)
		}
	}
}

func TestLimitsConfigurable(t *testing.T) {
	lim := Limits{MaxSteps: 50, MaxOutput: 6, MaxVars: 2, MaxDepth: 3, MaxSource: 40}
	cases := []struct {
		src  string
		want error
	}{
		{"i = 0; while i < 100 { i = i + 1 }", ErrStepLimit},
		{"print 1; print 2; print 3; print 4", ErrOutputLimit},
		{"a = 1; b = 2; c = 3", ErrMemoryLimit},
		{"print ((((1))))", ErrDepthLimit},
		{"print 1 + 1 + 1 + 1", ErrDepthLimit},
		{"print 1111111111111111111111111111111111111111", ErrMemoryLimit},
	}
	for _, tc := range cases {
		if _, err := Run(tc.src, lim); !errors.Is(err, tc.want) {
			t.Errorf("Run(%q, %+v) = %v, want %v", tc.src, lim, err, tc.want)
		}
	}
	// The step count: 1 statement + its expression's nodes.
	res, err := Run("x = 1 + 2", lim)
	if err != nil || res.Steps != 4 {
		t.Errorf("steps of x = 1 + 2: %d, %v; want 4 (statement, +, 1, 2)", res.Steps, err)
	}
}

func TestFormat(t *testing.T) {
	cases := []struct{ src, want string }{
		{"x=1;y=x*2+1;print y", "x = 1\ny = x * 2 + 1\nprint y\n"},
		{"print (a-b)-c; print a-(b-c); print (a+b)*c; print a*(b*c); print -(a+b); print - -a", "print a - b - c\nprint a - (b - c)\nprint (a + b) * c\nprint a * (b * c)\nprint -(a + b)\nprint -(-a)\n"},
		{"print (1<2)==1; print 1<(2==1)", "print (1 < 2) == 1\nprint 1 < (2 == 1)\n"},
		{"while x>0{if x==2{print x}else if x==1{print 0}else{x=x-1}\nx=x-1}", "while x > 0 {\n  if x == 2 {\n    print x\n  } else if x == 1 {\n    print 0\n  } else {\n    x = x - 1\n  }\n  x = x - 1\n}\n"},
	}
	for _, tc := range cases {
		p, err := Parse(tc.src, Limits{})
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.src, err)
		}
		if got := p.Format(); got != tc.want {
			t.Errorf("Format(%q) =\n%s\nwant\n%s", tc.src, got, tc.want)
		}
	}
}

// TestGeneratedProgramsRoundTrip: generated programs format to a fixed point and run the same after it.
func TestGeneratedProgramsRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for range 2000 {
		src := genProgram(rng, 2+rng.IntN(8), 5, 0.2)
		checkRoundTrip(t, src)
	}
}

// checkRoundTrip: a program that parses formats to source that parses to the same format and runs to the
// same result.
func checkRoundTrip(t *testing.T, src string) {
	lim := Limits{MaxSteps: 2000, MaxOutput: 256}
	p, err := Parse(src, lim)
	if err != nil {
		return
	}
	f1 := p.Format()
	q, err := Parse(f1, Limits{MaxSource: 1 << 30, MaxDepth: 1 << 20})
	if err != nil {
		t.Fatalf("formatted program does not parse: %v\n%s\nfrom %q", err, f1, src)
	}
	if f2 := q.Format(); f2 != f1 {
		t.Fatalf("format is not a fixed point:\n%s\n---\n%s", f1, f2)
	}
	r1, e1 := p.Run(lim, nil)
	r2, e2 := q.Run(lim, nil)
	if r1.Output != r2.Output || (e1 == nil) != (e2 == nil) {
		t.Fatalf("formatting changed the result: %q %v vs %q %v\n%s", r1.Output, e1, r2.Output, e2, f1)
	}
}

// FuzzRun: any source parses or fails cleanly, runs within its limits without panicking, and round-trips
// through Format. The seed corpus is in testdata/fuzz/FuzzRun.
func FuzzRun(f *testing.F) {
	for _, s := range []string{
		"x = 3\ny = 1\nwhile x > 0 {\n  y = y * 2\n  x = x - 1\n}\nprint y\n",
		"if 1 { print 1 } else if 0 { print 2 } else { print 3 }",
		"print -(-9223372036854775807 - 1)",
		"while 1 { print 1 }",
		"print ((((((((((1))))))))))",
		"a=1;b=a/0",
		"# comment\nprint 1 % -1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		lim := Limits{MaxSteps: 2000, MaxOutput: 256}
		res, err := Run(src, lim)
		if res.Steps > lim.MaxSteps+1 || len(res.Output) > lim.MaxOutput {
			t.Fatalf("limits broken: %d steps, %d bytes output", res.Steps, len(res.Output))
		}
		if err != nil && !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrRuntime) && !errors.Is(err, ErrStepLimit) &&
			!errors.Is(err, ErrDepthLimit) && !errors.Is(err, ErrMemoryLimit) && !errors.Is(err, ErrOutputLimit) {
			t.Fatalf("unclassified error %v", err)
		}
		checkRoundTrip(t, src)
	})
}
