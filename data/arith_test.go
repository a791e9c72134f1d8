// arith_test.go checks the arithmetic generator: hand-checked worked solutions for each operator (carries,
// borrows, negative results, leading zeros, zero operands, partial products), and a property test that for
// thousands of random problems the answer is the true result and every equation written in the solution holds.

package data

import (
	"math/big"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestArithmeticGolden(t *testing.T) {
	tests := []struct {
		a, op, b string
		think    string
		answer   string
	}{
		// Addition: carries, a final carry, zero, operands of different lengths.
		{"347", "+", "589", "7+9=16, write 6 carry 1; 4+8+1=13, write 3 carry 1; 3+5+1=9, write 9", "936"},
		{"99", "+", "1", "9+1=10, write 0 carry 1; 9+0+1=10, write 0 carry 1; write 1", "100"},
		{"0", "+", "0", "0+0=0, write 0", "0"},
		{"5", "+", "1234", "5+4=9, write 9; 0+3=3, write 3; 0+2=2, write 2; 0+1=1, write 1", "1239"},
		// Subtraction: borrows, a borrow through a zero, leading zeros, negative results.
		{"503", "-", "278", "3-8<0, borrow 1: 13-8=5, write 5; 0-1-7<0, borrow 1: 10-1-7=2, write 2; 5-1-2=2, write 2", "225"},
		{"42", "-", "5", "2-5<0, borrow 1: 12-5=7, write 7; 4-1-0=3, write 3", "37"},
		{"7", "-", "7", "7-7=0, write 0", "0"},
		{"1000", "-", "999", "0-9<0, borrow 1: 10-9=1, write 1; 0-1-9<0, borrow 1: 10-1-9=0, write 0; " +
			"0-1-9<0, borrow 1: 10-1-9=0, write 0; 1-1-0=0, write 0; drop leading zeros: 1", "1"},
		{"347", "-", "589", "347<589, so 347-589=-(589-347); 9-7=2, write 2; 8-4=4, write 4; 5-3=2, write 2; " +
			"589-347=242, so 347-589=-242", "-242"},
		{"3", "-", "10", "3<10, so 3-10=-(10-3); 0-3<0, borrow 1: 10-3=7, write 7; 1-1-0=0, write 0; " +
			"drop leading zeros: 7; 10-3=7, so 3-10=-7", "-7"},
		// Multiplication: partial products with carries, shifts, a zero digit, zero operands.
		{"12", "*", "3", "12*3: 2*3=6, write 6; 1*3=3, write 3, so 12*3=36", "36"},
		{"347", "*", "589", "347*9: 7*9=63, write 3 carry 6; 4*9+6=42, write 2 carry 4; 3*9+4=31, write 1 carry 3; write 3, so 347*9=3123. " +
			"347*8: 7*8=56, write 6 carry 5; 4*8+5=37, write 7 carry 3; 3*8+3=27, write 7 carry 2; write 2, so 347*8=2776, shifted 1: 27760. " +
			"347*5: 7*5=35, write 5 carry 3; 4*5+3=23, write 3 carry 2; 3*5+2=17, write 7 carry 1; write 1, so 347*5=1735, shifted 2: 173500. " +
			"Sum: 3+0+0=3, write 3; 2+6+0=8, write 8; 1+7+5=13, write 3 carry 1; 3+7+3+1=14, write 4 carry 1; " +
			"0+2+7+1=10, write 0 carry 1; 0+0+1+1=2, write 2, so 3123+27760+173500=204383", "204383"},
		{"25", "*", "40", "25*0=0. 25*4: 5*4=20, write 0 carry 2; 2*4+2=10, write 0 carry 1; write 1, so 25*4=100, shifted 1: 1000. " +
			"Sum: 0+0=0, write 0; 0+0=0, write 0; 0+0=0, write 0; 0+1=1, write 1, so 0+1000=1000", "1000"},
		{"0", "*", "7", "0*7: 0*7=0, write 0, so 0*7=0", "0"},
		{"9", "*", "0", "9*0=0", "0"},
	}
	for _, tc := range tests {
		key := tc.a + tc.op + tc.b
		t.Run(key, func(t *testing.T) {
			p, err := ArithmeticProblem(tc.a, tc.op, tc.b)
			if err != nil {
				t.Fatal(err)
			}
			want := "Q: " + key + "=?\nA: <think>" + tc.think + "</think> " + tc.answer + "\n"
			if p.Text != want {
				t.Errorf("text\n got %q\nwant %q", p.Text, want)
			}
			if p.Key != key || p.Answer != tc.answer {
				t.Errorf("key %q answer %q, want %q %q", p.Key, p.Answer, key, tc.answer)
			}
		})
	}
}

func TestArithmeticProblemErrors(t *testing.T) {
	tests := []struct{ a, op, b string }{
		{"012", "+", "3"}, {"", "+", "3"}, {"1a", "*", "3"}, {"-4", "-", "3"}, {"4", "/", "2"},
	}
	for _, tc := range tests {
		if _, err := ArithmeticProblem(tc.a, tc.op, tc.b); err == nil {
			t.Errorf("ArithmeticProblem(%q, %q, %q) succeeded", tc.a, tc.op, tc.b)
		}
	}
}

func TestArithmeticValidate(t *testing.T) {
	tests := []struct {
		g  ArithmeticGenerator
		ok bool
	}{
		{ArithmeticGenerator{MaxDigits: 3}, true},
		{ArithmeticGenerator{MaxDigits: 1, Ops: []string{"*", "*", "+"}}, true},
		{ArithmeticGenerator{MaxDigits: MaxArithmeticDigits}, true},
		{ArithmeticGenerator{MaxDigits: 0}, false},
		{ArithmeticGenerator{MaxDigits: MaxArithmeticDigits + 1}, false},
		{ArithmeticGenerator{MaxDigits: 2, Ops: []string{"+", "/"}}, false},
	}
	for _, tc := range tests {
		if err := tc.g.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: Validate() = %v, want ok=%v", tc.g, err, tc.ok)
		}
	}
}

// equationRe matches every equation the solutions write: "13-8=5", "4*9+6=42", "347-589=-242", ...
var equationRe = regexp.MustCompile(`(\d+(?:[-+*]\d+)+)=(-?\d+)`)

// evalExpr evaluates digits joined by + - * with the usual precedence.
func evalExpr(t *testing.T, expr string) *big.Int {
	t.Helper()
	sum := new(big.Int)
	sign := int64(1)
	for len(expr) > 0 {
		end := strings.IndexAny(expr, "+-")
		term := expr
		if end >= 0 {
			term = expr[:end]
		}
		prod := big.NewInt(1)
		for _, f := range strings.Split(term, "*") {
			v, ok := new(big.Int).SetString(f, 10)
			if !ok {
				t.Fatalf("bad factor %q in %q", f, expr)
			}
			prod.Mul(prod, v)
		}
		sum.Add(sum, prod.Mul(prod, big.NewInt(sign)))
		if end < 0 {
			break
		}
		sign = 1
		if expr[end] == '-' {
			sign = -1
		}
		expr = expr[end+1:]
	}
	return sum
}

func TestArithmeticProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	gens := []ArithmeticGenerator{{MaxDigits: 1}, {MaxDigits: 4}, {MaxDigits: 9, Ops: []string{"*"}}, {MaxDigits: MaxArithmeticDigits}}
	seenNeg, seenDrop, seenCarry := false, false, false
	for _, g := range gens {
		for range 3000 {
			p := g.Generate(rng)
			var a, b string
			var op byte
			for i := 1; i < len(p.Key); i++ {
				if c := p.Key[i]; c == '+' || c == '-' || c == '*' {
					a, op, b = p.Key[:i], c, p.Key[i+1:]
					break
				}
			}
			if len(a) == 0 || len(a) > g.MaxDigits || len(b) == 0 || len(b) > g.MaxDigits {
				t.Fatalf("key %q: operands outside 1..%d digits", p.Key, g.MaxDigits)
			}
			x, _ := new(big.Int).SetString(a, 10)
			y, _ := new(big.Int).SetString(b, 10)
			want := new(big.Int)
			switch op {
			case '+':
				want.Add(x, y)
			case '-':
				want.Sub(x, y)
			case '*':
				want.Mul(x, y)
			}
			if p.Answer != want.String() {
				t.Fatalf("%s: answer %s, want %s", p.Key, p.Answer, want)
			}
			head := "Q: " + p.Key + "=?\nA: <think>"
			tail := "</think> " + want.String() + "\n"
			if !strings.HasPrefix(p.Text, head) || !strings.HasSuffix(p.Text, tail) {
				t.Fatalf("%s: malformed text %q", p.Key, p.Text)
			}
			think := p.Text[len(head) : len(p.Text)-len(tail)]
			if strings.Contains(think, "<think>") || strings.Contains(think, "</think>") {
				t.Fatalf("%s: nested think tags in %q", p.Key, p.Text)
			}
			for _, m := range equationRe.FindAllStringSubmatch(think, -1) {
				got, _ := new(big.Int).SetString(m[2], 10)
				if v := evalExpr(t, m[1]); v.Cmp(got) != 0 {
					t.Fatalf("%s: wrong step %q (= %s) in %q", p.Key, m[0], v, think)
				}
			}
			seenNeg = seenNeg || want.Sign() < 0
			seenDrop = seenDrop || strings.Contains(think, "drop leading zeros")
			seenCarry = seenCarry || strings.Contains(think, "carry")
		}
	}
	if !seenNeg || !seenDrop || !seenCarry {
		t.Errorf("random problems missed a case: negative %v, leading zeros %v, carry %v", seenNeg, seenDrop, seenCarry)
	}
}

func TestArithmeticGenerateDeterministic(t *testing.T) {
	g := ArithmeticGenerator{MaxDigits: 5}
	r1, r2 := rand.New(rand.NewPCG(7, 9)), rand.New(rand.NewPCG(7, 9))
	for i := range 100 {
		if p, q := g.Generate(r1), g.Generate(r2); p != q {
			t.Fatalf("draw %d: %q != %q", i, p.Key, q.Key)
		}
	}
}

// TestArithmeticPlacedGolden: the placed style, hand-written (see the file comment of arith.go).
func TestArithmeticPlacedGolden(t *testing.T) {
	tests := []struct{ a, op, b, think, answer string }{
		{"347", "+", "589", "347: 3c 4b 7a. 589: 5c 8b 9a. a: 7+9=16, write 6 carry 1; b: 4+8+1=13, write 3 carry 1; c: 3+5+1=9, write 9", "936"},
		{"46", "+", "4", "46: 4b 6a. 4: 0b 4a. a: 6+4=10, write 0 carry 1; b: 4+0+1=5, write 5", "50"},
		{"95", "+", "7", "95: 9b 5a. 7: 0b 7a. a: 5+7=12, write 2 carry 1; b: 9+0+1=10, write 0 carry 1; c: write 1", "102"},
		{"500", "-", "7", "500: 5c 0b 0a. 7: 0c 0b 7a. a: 0-7<0, borrow 1: 10-7=3, write 3; b: 0-1-0<0, borrow 1: 10-1-0=9, write 9; c: 5-1-0=4, write 4", "493"},
		{"3", "-", "12", "3<12, so 3-12=-(12-3); 12: 1b 2a. 3: 0b 3a. a: 2-3<0, borrow 1: 12-3=9, write 9; b: 1-1-0=0, write 0; drop leading zeros: 9; 12-3=9, so 3-12=-9", "-9"},
		{"73", "*", "8", "73: 7b 3a. 73*8: a: 3*8=24, write 4 carry 2; b: 7*8+2=58, write 8 carry 5; c: write 5, so 73*8=584", "584"},
	}
	for _, tt := range tests {
		p, err := ArithmeticProblemPlaced(tt.a, tt.op, tt.b)
		if err != nil {
			t.Fatal(err)
		}
		want := "Q: " + tt.a + tt.op + tt.b + "=?\nA: <think>" + tt.think + "</think> " + tt.answer + "\n"
		if p.Text != want || p.Answer != tt.answer {
			t.Errorf("%s%s%s:\n got %q\nwant %q", tt.a, tt.op, tt.b, p.Text, want)
		}
		plain, err := ArithmeticProblem(tt.a, tt.op, tt.b)
		if err != nil || plain.Answer != p.Answer || plain.Key != p.Key {
			t.Errorf("%s%s%s: plain style answers %q (err %v), placed %q", tt.a, tt.op, tt.b, plain.Answer, err, p.Answer)
		}
	}
}

// TestArithmeticAtomicGolden: the atomic style, hand-written (see the file comment of arith.go).
func TestArithmeticAtomicGolden(t *testing.T) {
	tests := []struct{ a, op, b, think, answer string }{
		{"347", "+", "589", "347: 3c 4b 7a. 589: 5c 8b 9a. a: 7+9=16, write 6 carry 1; b: 4+8=12, 2+1=3, write 3 carry 1; c: 3+5=8, 8+1=9, write 9", "936"},
		{"95", "+", "7", "95: 9b 5a. 7: 0b 7a. a: 5+7=12, write 2 carry 1; b: 9+0=9, 9+1=10, write 0 carry 1; c: write 1", "102"},
		{"342", "-", "178", "342: 3c 4b 2a. 178: 1c 7b 8a. a: 2-8<0, borrow 1: 10-8=2, 2+2=4, write 4; b: 7+1=8, 4-8<0, borrow 1: 10-8=2, 2+4=6, write 6; c: 1+1=2, 3-2=1, write 1", "164"},
		{"500", "-", "7", "500: 5c 0b 0a. 7: 0c 0b 7a. a: 0-7<0, borrow 1: 10-7=3, 3+0=3, write 3; b: 0+1=1, 0-1<0, borrow 1: 10-1=9, 9+0=9, write 9; c: 0+1=1, 5-1=4, write 4", "493"},
		{"909", "-", "99", "909: 9c 0b 9a. 99: 0c 9b 9a. a: 9-9=0, write 0; b: 0-9<0, borrow 1: 10-9=1, 1+0=1, write 1; c: 0+1=1, 9-1=8, write 8", "810"},
		{"3", "-", "12", "3<12, so 3-12=-(12-3); 12: 1b 2a. 3: 0b 3a. a: 2-3<0, borrow 1: 10-3=7, 7+2=9, write 9; b: 0+1=1, 1-1=0, write 0; drop leading zeros: 9; 12-3=9, so 3-12=-9", "-9"},
		{"73", "*", "8", "73: 7b 3a. 73*8: a: 3*8=24, write 4 carry 2; b: 7*8=56, 6+2=8, write 8 carry 5; c: write 5, so 73*8=584", "584"},
		{"25", "*", "3", "25: 2b 5a. 25*3: a: 5*3=15, write 5 carry 1; b: 2*3=6, 6+1=7, write 7, so 25*3=75", "75"},
		{"35", "*", "3", "35: 3b 5a. 35*3: a: 5*3=15, write 5 carry 1; b: 3*3=9, 9+1=10, write 0 carry 1; c: write 1, so 35*3=105", "105"},
		{"629", "*", "7", "629: 6c 2b 9a. 629*7: a: 9*7=63, write 3 carry 6; b: 2*7=14, 4+6=10, write 0, 1+1=2 carry 2; c: 6*7=42, 2+2=4, write 4 carry 4; d: write 4, so 629*7=4403", "4403"},
	}
	for _, tt := range tests {
		p, err := ArithmeticProblemStyle(tt.a, tt.op, tt.b, StyleAtomic)
		if err != nil {
			t.Fatal(err)
		}
		want := "Q: " + tt.a + tt.op + tt.b + "=?\nA: <think>" + tt.think + "</think> " + tt.answer + "\n"
		if p.Text != want || p.Answer != tt.answer {
			t.Errorf("%s%s%s:\n got %q\nwant %q", tt.a, tt.op, tt.b, p.Text, want)
		}
	}
	if _, err := ArithmeticProblemStyle("1", "+", "2", Style(7)); err == nil {
		t.Error("style 7 accepted")
	}
}

// TestArithmeticAtomicSteps: on random problems of up to 4 digits (several partial products too), the atomic
// style gives the plain style's answer, no step of its work has more than two operands, and every step
// "x op y=z" is true.
func TestArithmeticAtomicSteps(t *testing.T) {
	step := regexp.MustCompile(`(^|[^-+*\d(])(\d+)([-+*])(\d+)=(\d+)`)
	threeOperands := regexp.MustCompile(`\d[-+*]\d+[-+*]\d+=`)
	restated := regexp.MustCompile(`so [\d+]+=\d+`)
	rng := rand.New(rand.NewPCG(3, 4))
	steps := 0
	for i := 0; i < 3000; i++ {
		a, b := randomNumber(rng, 4), randomNumber(rng, 4)
		op := arithmeticOps[i%3]
		plain, err := ArithmeticProblem(a, op, b)
		if err != nil {
			t.Fatal(err)
		}
		p, err := ArithmeticProblemStyle(a, op, b, StyleAtomic)
		if err != nil {
			t.Fatal(err)
		}
		if p.Answer != plain.Answer {
			t.Fatalf("%s%s%s: atomic answers %s, plain %s", a, op, b, p.Answer, plain.Answer)
		}
		think := p.Text[strings.Index(p.Text, "<think>")+len("<think>") : strings.Index(p.Text, "</think>")]
		// "so 4970+0+284000=…" restates the partial products' sum, it is not a step
		if m := threeOperands.FindString(restated.ReplaceAllString(think, "")); m != "" {
			t.Fatalf("%s%s%s: step %q has three operands in %q", a, op, b, m, think)
		}
		for _, m := range step.FindAllStringSubmatch(think, -1) {
			x, _ := strconv.Atoi(m[2])
			y, _ := strconv.Atoi(m[4])
			z, _ := strconv.Atoi(m[5])
			if got := map[string]int{"+": x + y, "-": x - y, "*": x * y}[m[3]]; got != z {
				t.Fatalf("%s%s%s: false step %q in %q", a, op, b, m[0], think)
			}
			steps++
		}
	}
	if steps < 20000 {
		t.Errorf("checked only %d steps", steps)
	}
}
