// Tests of the reward shaping and of the per-family verifiers: right, wrong, malformed, truncated, empty,
// huge and invalid UTF-8 completions, with the exact reward parts.
package envs

import (
	"math"
	"strings"
	"testing"
)

func TestTokenLength(t *testing.T) {
	cases := []struct {
		s    string
		want int
	}{
		{"", 0},
		{"abc", 3},
		{"ab</think>12", 5},
		{"ab</think>12<｜end▁of▁sentence｜>", 6},
		{"é", 2}, // bytes
	}
	for _, tc := range cases {
		if got := TokenLength(tc.s); got != tc.want {
			t.Errorf("TokenLength(%q) = %d, want %d", tc.s, got, tc.want)
		}
	}
}

type verifyCase struct {
	name       string
	completion string
	finish     string
	correct    bool
	parts      [3]float64 // correctness, format, length_penalty
}

func checkVerify(t *testing.T, f Family, task Task, cases []verifyCase) {
	t.Helper()
	for _, tc := range cases {
		r := f.Verify(task, tc.completion, tc.finish)
		got := [3]float64{r.Parts[PartCorrectness], r.Parts[PartFormat], r.Parts[PartLengthPenalty]}
		ok := len(r.Parts) == 3 && r.Correct == tc.correct
		for i := range got {
			ok = ok && math.Abs(got[i]-tc.parts[i]) < 1e-12
		}
		if sum := got[0] + got[1] + got[2]; math.Abs(r.Total-sum) > 1e-12 {
			ok = false
		}
		if !ok {
			t.Errorf("%s: %s: Verify = %+v, want correct=%v parts=%v", f.Name(), tc.name, r, tc.correct, tc.parts)
		}
	}
}

var (
	rightParts = [3]float64{1, 0.1, 0}
	wrongParts = [3]float64{0, 0.1, 0}
	zeroParts  = [3]float64{}
)

// commonCases are the malformed inputs every verifier must score 0 without panicking; right is a correct
// answer text for the task.
func commonCases(right string) []verifyCase {
	huge := strings.Repeat("9", 1<<20)
	return []verifyCase{
		{"right", "work</think>" + right, "stop", true, rightParts},
		{"right, EOS literal", "work</think>" + right + litEOS, "stop", true, rightParts},
		{"right, no reasoning", "</think>" + right, "eos", true, rightParts},
		{"truncated", "work</think>" + right, FinishLength, false, zeroParts},
		{"no </think>", right, "stop", false, zeroParts},
		{"two </think>", "a</think>b</think>" + right, "stop", false, zeroParts},
		{"<think> inside", "<think>a</think>" + right, "stop", false, zeroParts},
		{"User literal in answer", "a</think>" + right + "<｜User｜>", "stop", false, zeroParts},
		{"EOS in the middle", "a" + litEOS + "</think>" + right, "stop", false, zeroParts},
		{"blank answer", "a</think> \n\t", "stop", false, zeroParts},
		{"empty", "", "stop", false, zeroParts},
		{"empty, truncated", "", FinishLength, false, zeroParts},
		{"invalid UTF-8", "\xff\xfe</think>\xff\xc3", "stop", false, wrongParts},
		{"invalid UTF-8 only", "\xff\xfe\xc3", "stop", false, zeroParts},
		{"huge reasoning", huge + "</think>" + right, "stop", true, rightParts},
		{"huge answer", "a</think>" + huge, "stop", false, wrongParts},
		{"huge, truncated", huge, FinishLength, false, zeroParts},
	}
}

func TestVerifyMath(t *testing.T) {
	m, err := NewMath(Options{})
	if err != nil {
		t.Fatal(err)
	}
	task, _ := MathTask("347", "+", "589")
	neg, _ := MathTask("21", "-", "59")
	cases := append(commonCases("936"),
		verifyCase{"spaces and +", "w</think> + 9 36 \n", "stop", true, rightParts},
		verifyCase{"leading zero", "w</think>0936", "stop", true, rightParts},
		verifyCase{"off by one", "w</think>937", "stop", false, wrongParts},
		verifyCase{"negative", "w</think>-936", "stop", false, wrongParts},
		verifyCase{"words", "w</think>936 is the answer", "stop", false, wrongParts},
		verifyCase{"trailing period", "w</think>936.", "stop", false, wrongParts},
		verifyCase{"two numbers", "w</think>936\n937", "stop", false, wrongParts},
		verifyCase{"plus only", "w</think>+", "stop", false, wrongParts},
		verifyCase{"double plus", "w</think>++936", "stop", false, wrongParts},
	)
	checkVerify(t, m, task, cases)
	checkVerify(t, m, neg, []verifyCase{
		{"negative answer", "w</think>-38", "stop", true, rightParts},
		{"minus space", "w</think>- 38", "stop", true, rightParts},
		{"sign lost", "w</think>38", "stop", false, wrongParts},
		{"minus only", "w</think>-", "stop", false, wrongParts},
	})
}

func TestLengthPenalty(t *testing.T) {
	m, err := NewMath(Options{Reward: RewardOptions{Correct: 2, Format: 0.5, LengthPenalty: 0.5, LengthBudget: 10}})
	if err != nil {
		t.Fatal(err)
	}
	task, _ := MathTask("347", "+", "589")
	checkVerify(t, m, task, []verifyCase{
		// 5 + 1 + 3 = 9 tokens ≤ 10: no penalty.
		{"within budget", "abcde</think>936", "stop", true, [3]float64{2, 0.5, 0}},
		// 12 + 1 + 3 = 16 tokens: over by 6/10, penalty −0.5·0.6.
		{"over budget", "abcdefghijkl</think>936", "stop", true, [3]float64{2, 0.5, -0.3}},
		// 12 + 1 + 3 + EOS = 17 tokens: −0.5·0.7.
		{"over budget, EOS", "abcdefghijkl</think>936" + litEOS, "stop", true, [3]float64{2, 0.5, -0.35}},
		// 40 tokens: over by 3 budgets, capped at −0.5.
		{"capped", strings.Repeat("x", 40), FinishLength, false, [3]float64{0, 0, -0.5}},
	})
}

func TestVerifyLogic(t *testing.T) {
	l, err := NewLogic(Options{})
	if err != nil {
		t.Fatal(err)
	}
	sortTask := SortTask([]int{78, 79, 23, 4, 49})
	checkVerify(t, l, sortTask, append(commonCases("4 23 49 78 79"),
		verifyCase{"commas and brackets", "w</think>[4, 23, 49, 78, 79]", "stop", true, rightParts},
		verifyCase{"commas", "w</think>4,23,49,78,79", "stop", true, rightParts},
		verifyCase{"missing one", "w</think>4 23 49 78", "stop", false, wrongParts},
		verifyCase{"one extra", "w</think>4 23 49 78 79 79", "stop", false, wrongParts},
		verifyCase{"unsorted", "w</think>23 4 49 78 79", "stop", false, wrongParts},
		verifyCase{"negative", "w</think>-4 23 49 78 79", "stop", false, wrongParts},
		verifyCase{"huge number", "w</think>4 23 49 78 99999999999999999999", "stop", false, wrongParts},
	))
	boolTask := BoolTask("(T and not F) or F")
	if boolTask.Answer != "T" {
		t.Fatalf("answer %q, want T", boolTask.Answer)
	}
	checkVerify(t, l, boolTask, append(commonCases("T"),
		verifyCase{"true", "w</think>true", "stop", true, rightParts},
		verifyCase{"True, spaces", "w</think> True \n", "stop", true, rightParts},
		verifyCase{"t", "w</think>t", "stop", true, rightParts},
		verifyCase{"F", "w</think>F", "stop", false, wrongParts},
		verifyCase{"false", "w</think>false", "stop", false, wrongParts},
		verifyCase{"yes", "w</think>yes", "stop", false, wrongParts},
		verifyCase{"T T", "w</think>T T", "stop", false, wrongParts},
	))
}

func TestVerifyCode(t *testing.T) {
	c, err := NewCode(Options{Params: map[string]string{"max_steps": "5000"}})
	if err != nil {
		t.Fatal(err)
	}
	pred, ok := PredictTask("a = 2\nprint 8 + a\nprint 0\nprint a * 4\n")
	if !ok || pred.Answer != "10 0 8" {
		t.Fatalf("predict task %+v, %v", pred, ok)
	}
	checkVerify(t, c, pred, append(commonCases("10 0 8"),
		verifyCase{"newlines", "w</think>10\n0\n8\n", "stop", true, rightParts},
		verifyCase{"commas", "w</think>10, 0, 8", "stop", false, wrongParts},
		verifyCase{"wrong order", "w</think>10 8 0", "stop", false, wrongParts},
	))
	write, ok := WriteTask("i = 3\nwhile i <= 12 {\n  print i\n  i = i + 3\n}\n", "steps of 3")
	if !ok || write.Answer != "3 6 9 12" || write.Prompt != "Write a program that prints: 3 6 9 12" {
		t.Fatalf("write task %+v, %v", write, ok)
	}
	loop := "i = 3\nwhile i <= 12 {\n  print i\n  i = i + 3\n}"
	checkVerify(t, c, write, []verifyCase{
		{"reference program", "w</think>" + loop, "stop", true, rightParts},
		{"reference program, EOS", "w</think>\n" + loop + "\n" + litEOS, "stop", true, rightParts},
		{"constant prints", "w</think>print 3; print 6\nprint 9\nprint 12", "stop", true, rightParts},
		{"truncated", "w</think>" + loop, FinishLength, false, zeroParts},
		{"one value too many", "w</think>print 3; print 6; print 9; print 12; print 15", "stop", false, wrongParts},
		{"output then error", "w</think>print 3; print 6; print 9; print 12; print 1 / 0", "stop", false, wrongParts},
		{"syntax error", "w</think>print 3 6 9 12", "stop", false, wrongParts},
		{"infinite loop", "w</think>while 1 { x = 1 }", "stop", false, wrongParts},
		{"output flood", "w</think>while 1 { print 3 }", "stop", false, wrongParts},
		{"deep nesting", "w</think>print " + strings.Repeat("(", 100000) + "1", "stop", false, wrongParts},
		{"the output as text", "w</think>3 6 9 12", "stop", false, wrongParts},
		{"no </think>", loop, "stop", false, zeroParts},
		{"invalid UTF-8", "w</think>print 3\xff", "stop", false, wrongParts},
	})
}

func TestVerifyDataset(t *testing.T) {
	path := testDataset(t, 100)
	plain, err := NewDataset(Options{Params: map[string]string{"path": path}})
	if err != nil {
		t.Fatal(err)
	}
	fold, err := NewDataset(Options{Params: map[string]string{"path": path, "case_insensitive": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	task := Task{ID: "x", Family: "dataset", Prompt: "Capital of country 7?", Answer: "City 7", Meta: map[string]string{}}
	checkVerify(t, plain, task, append(commonCases("City 7"),
		verifyCase{"spaces collapsed", "w</think>  City \n 7 ", "stop", true, rightParts},
		verifyCase{"case differs", "w</think>city 7", "stop", false, wrongParts},
		verifyCase{"other row", "w</think>City 8", "stop", false, wrongParts},
		verifyCase{"no space", "w</think>City7", "stop", false, wrongParts},
	))
	checkVerify(t, fold, task, []verifyCase{
		{"case folded", "w</think>CITY 7", "stop", true, rightParts},
		{"other row", "w</think>city 8", "stop", false, wrongParts},
	})
}

func TestVerifyKV(t *testing.T) {
	k, err := NewKV(Options{Params: map[string]string{"length": "64"}})
	if err != nil {
		t.Fatal(err)
	}
	task := Task{ID: "kv", Family: "kvretrieval", Prompt: "ab12=cd34\nValue of ab12?", Answer: "cd34", Meta: map[string]string{}}
	checkVerify(t, k, task, append(commonCases("cd34"),
		verifyCase{"spaces", "w</think> cd34\n", "stop", true, rightParts},
		verifyCase{"case", "w</think>CD34", "stop", false, wrongParts},
		verifyCase{"key instead", "w</think>ab12", "stop", false, wrongParts},
		verifyCase{"pair", "w</think>ab12=cd34", "stop", false, wrongParts},
	))
}

// TestVerifyForeignTask: a task the family did not make (no Meta) is wrong, never a panic.
func TestVerifyForeignTask(t *testing.T) {
	for _, f := range allFamilies(t) {
		r := f.Verify(Task{}, "x</think>y", "stop")
		if r.Correct || r.Parts[PartFormat] != 0.1 {
			t.Errorf("%s: foreign task scored %+v", f.Name(), r)
		}
		if reasoning, answer := f.Solution(Task{Answer: "z"}); reasoning != "" || answer != "z" {
			t.Errorf("%s: Solution of a foreign task = %q, %q; want no reasoning and its answer", f.Name(), reasoning, answer)
		}
	}
}
