// ledger.go: the rl stage's record of groups, <run>/groups.jsonl: one line per learner step naming the
// groups the update used and the ones it dropped, with why. It is an audit trail, not state: a resumed
// learner redoes the steps after its checkpoint and appends their lines again, and the last line of a step
// is the one its weights hold (HandledGroups).

package trainer

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sparrow-rl/sparrow/data"
)

// LedgerFile is the name of the group ledger in a run directory.
const LedgerFile = "groups.jsonl"

// ledgerLine is one step's line.
type ledgerLine struct {
	Stage         string            `json:"stage"`
	Step          int               `json:"step"`
	PolicyVersion int64             `json:"policy_version"` // after the step's update
	Groups        []string          `json:"groups"`
	Dropped       map[string]string `json:"dropped,omitempty"`
}

// groupLedger appends ledger lines.
type groupLedger struct{ path string }

func openLedger(runDir string) *groupLedger {
	return &groupLedger{path: filepath.Join(runDir, LedgerFile)}
}

// record appends the line of learner step step (counted from 1).
func (l *groupLedger) record(stage string, step int, version int64, groups []*data.Group, dropped map[string]string) error {
	line := ledgerLine{Stage: stage, Step: step, PolicyVersion: version, Dropped: dropped}
	for _, g := range groups {
		line.Groups = append(line.Groups, g.GroupID)
	}
	b, err := json.Marshal(line)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("group ledger: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("group ledger %s: %w", l.path, err)
	}
	return f.Close()
}

// HandledGroups reads the ledger of runDir and returns, for steps 1..through of stage, the groups each step
// used and dropped as its last line says, in step order, and the policy version after step through.
func HandledGroups(runDir, stage string, through int) ([]string, int64, error) {
	path := filepath.Join(runDir, LedgerFile)
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	last := map[int]ledgerLine{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for n := 1; sc.Scan(); n++ {
		var l ledgerLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, 0, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if l.Stage == stage {
			last[l.Step] = l
		}
	}
	if err := sc.Err(); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	var ids []string
	for step := 1; step <= through; step++ {
		l, ok := last[step]
		if !ok {
			return nil, 0, fmt.Errorf("%s: no line for step %d of stage %s", path, step, stage)
		}
		ids = append(ids, l.Groups...)
		for id := range l.Dropped {
			ids = append(ids, id)
		}
	}
	return ids, last[through].PolicyVersion, nil
}
