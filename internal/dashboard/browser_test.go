// The dashboard in a real headless browser (Chromium): over the two tiny runs the page renders the metric
// charts (uPlot canvases) and the rollout viewer (token spans coloured by log-prob, or with ?colour=adv by
// advantage), and a screenshot is a non-blank PNG of the window's size. Skipped without Chromium unless
// SPARROW_REQUIRE_CHROMIUM=1. SPARROW_DASHBOARD_SCREENSHOT=FILE keeps the screenshot.

package dashboard

import (
	"context"
	"image"
	_ "image/png" // the screenshot
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// chromiumPath finds Debian's chromium (or another Chrome) on PATH.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("SPARROW_REQUIRE_CHROMIUM") == "1" {
		t.Fatal("SPARROW_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install chromium)")
	}
	t.Skip("no chromium on PATH (apt-get install chromium; SPARROW_REQUIRE_CHROMIUM=1 makes this a failure)")
	return ""
}

// runChromium runs headless Chromium with args on url (its own profile directory) and returns its stdout.
func runChromium(t *testing.T, bin, url string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	all := append([]string{"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
		"--no-first-run", "--user-data-dir=" + t.TempDir(), "--window-size=1400,1800", "--virtual-time-budget=8000"}, args...)
	cmd := exec.CommandContext(ctx, bin, append(all, url)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", bin, args, err, stderr.String())
	}
	return out
}

func TestBrowser(t *testing.T) {
	bin := chromiumPath(t)
	dirs := tinyRuns(t)
	h, err := New(dirs)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/"

	dom := string(runChromium(t, bin, url, "--dump-dom"))
	checks := []struct {
		what string
		re   string
		min  int
	}{
		{"uPlot charts", `<canvas`, 10},
		{"chart groups", `class="group-box"`, 3},
		{"the reward/mean chart", `data-metric="reward/mean"`, 1},
		{"rollout groups", `class="group"`, 2},
		{"completions", `class="completion"`, 6},
		{"coloured token spans", `class="tok"`, 20},
		{"reasoning or answer messages", `class="msg (reasoning|answer)"`, 6},
		{"stage timeline bars", `class="tl-bar"`, 2},
		{"the differing config key", `rl\.beta`, 1},
	}
	for _, c := range checks {
		if n := len(regexp.MustCompile(c.re).FindAllStringIndex(dom, -1)); n < c.min {
			t.Errorf("rendered DOM has %d of %s (%s); want at least %d", n, c.what, c.re, c.min)
		}
	}
	if strings.Contains(dom, "error: ") {
		t.Errorf("the page reports an error: %s", regexp.MustCompile(`error: [^<]*`).FindString(dom))
	}
	if t.Failed() {
		t.Logf("DOM:\n%.4000s", dom)
	}

	// Tokens are coloured by log-prob (many shades), and with ?colour=adv by advantage: one shade per
	// completion, green (>= 0: red and blue equal) or red (< 0: green and blue equal).
	if bgs := tokenBackgrounds(dom); len(bgs) < 3 {
		t.Errorf("log-prob colouring: %d distinct token backgrounds; want several", len(bgs))
	}
	advBGs := tokenBackgrounds(string(runChromium(t, bin, url+"?colour=adv", "--dump-dom")))
	if len(advBGs) == 0 {
		t.Error("advantage colouring: no token spans")
	}
	for bg := range advBGs {
		if r, g, b := bg[0], bg[1], bg[2]; !(r == b && g >= r) && !(g == b && r >= g) {
			t.Errorf("advantage colouring: token background rgb%v is neither green nor red", bg)
		}
	}

	shot := filepath.Join(t.TempDir(), "dashboard.png")
	runChromium(t, bin, url, "--screenshot="+shot)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, format, err := image.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); format != "png" || b.Dx() != 1400 || b.Dy() != 1800 {
		t.Errorf("screenshot: %s %v; want a 1400x1800 png", format, b)
	}
	colours := map[uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[(r>>11)<<10|(g>>11)<<5|bl>>11] = true
		}
	}
	if len(colours) < 20 {
		t.Errorf("screenshot has %d distinct colours; a rendered page has many more", len(colours))
	}
	if keep := os.Getenv("SPARROW_DASHBOARD_SCREENSHOT"); keep != "" {
		data, err := os.ReadFile(shot)
		if err == nil {
			err = os.WriteFile(keep, data, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// tokenBackgrounds returns the distinct background colours of the token spans of a dumped DOM (Chromium
// writes them as rgb(r, g, b)).
func tokenBackgrounds(dom string) map[[3]int]bool {
	out := map[[3]int]bool{}
	re := regexp.MustCompile(`class="tok" title="[^"]*" style="background: rgb\((\d+), (\d+), (\d+)\)`)
	for _, m := range re.FindAllStringSubmatch(dom, -1) {
		var c [3]int
		for i := range c {
			c[i], _ = strconv.Atoi(m[i+1])
		}
		out[c] = true
	}
	return out
}
