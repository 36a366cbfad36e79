package e2eutil

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// AnnotationsSizeLimit is the API server's limit on the total size of an
// object's annotations, keys and values together.
const AnnotationsSizeLimit = 256 * 1024

// eventFloodBurst is how many Events of one type about one object
// client-go's flood filter lets through before it passes one per five
// minutes.
const eventFloodBurst = 25

// statusRoom is what the fuzzer leaves free under AnnotationsSizeLimit
// for podlb's own status annotation and the API server's bookkeeping.
const statusRoom = 16 * 1024

// FuzzTarget is an object with a podlb annotation whose value the fuzzer
// breaks, one round at a time, while its last good value is in force.
type FuzzTarget struct {
	// Kind is "Service" or "Ingress".
	Kind            string
	Namespace, Name string
	// Key is the annotation fuzzed; Good its last good value, restored
	// at the end.
	Key, Good string
}

func (f FuzzTarget) String() string { return f.Kind + " " + f.Namespace + "/" + f.Name }

// FuzzOptions tune FuzzAnnotations.
type FuzzOptions struct {
	// Steady checks, after every round and once the good values are
	// back, that what the good values bound still serves (targets
	// registered and healthy, load balancers provisioned).
	Steady func() error
}

// fuzzSeed is PODLB_FUZZ_SEED when set, else the clock; the test logs it
// so that a failure can be replayed.
func fuzzSeed(t testing.TB) int64 {
	seed := time.Now().UnixNano()
	if s := os.Getenv("PODLB_FUZZ_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("PODLB_FUZZ_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("fuzz seed %d (replay with PODLB_FUZZ_SEED=%d)", seed, seed)
	return seed
}

// fuzzRounds is PODLB_FUZZ_ROUNDS when set, else one round of each kind
// of broken value.
func fuzzRounds(t testing.TB) int {
	if s := os.Getenv("PODLB_FUZZ_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("PODLB_FUZZ_ROUNDS=%q: want a positive number", s)
		}
		return n
	}
	return len(fuzzKinds)
}

// FuzzAnnotations breaks the targets' annotations with generated values
// (random JSON, wrong types, unicode, control characters, truncation, deep
// nesting, huge keys and values, thousands of keys, values at the
// annotation size limit), a new value per target every round, then a
// burst of large values, and checks that podlb:
//
//   - keeps reconciling: no reconciler panics, every round's problem
//     reaches the status, naming the annotation, and the good values,
//     once restored, clear every problem;
//   - keeps serving: Steady holds after every round;
//   - warns once per distinct problem: no round adds more Warnings (by
//     count) than the object has problems, a new problem is a new
//     Warning, and Warnings and status stay small whatever the size of
//     the value;
//   - holds no memory for values it has seen: the live heap after the
//     burst is within half of what the burst pushed of where it started.
func FuzzAnnotations(t *testing.T, k Kube, fts []FuzzTarget, o FuzzOptions) {
	t.Helper()
	rng := rand.New(rand.NewSource(fuzzSeed(t)))
	rounds := fuzzRounds(t)
	panics := reconcilePanics(t)
	heapBefore := liveHeap()

	warned, lastProblems := map[string]int32{}, map[string]string{}
	for _, ft := range fts {
		warned[ft.String()] = warningCount(k.AllWarningsOf(t, ft.Namespace, ft.Name, ft.Kind))
	}
	for round := range rounds {
		kind := fuzzKinds[round%len(fuzzKinds)]
		if round >= len(fuzzKinds) {
			kind = fuzzKinds[rng.Intn(len(fuzzKinds))]
		}
		for _, ft := range fts {
			v := kind.gen(rng, ft.Good, k.annotationRoom(t, ft))
			t.Logf("round %d, %s: %s, %d bytes: %s", round, ft, kind.name, len(v), abbreviate(v, 120))
			k.annotateObject(t, ft, v)
		}
		for _, ft := range fts {
			what := fmt.Sprintf("round %d (%s), %s", round, kind.name, ft)
			var problems []string
			start := time.Now()
			Eventually(t, 30*time.Second, what+": status names the annotation", func() error {
				var err error
				problems, err = k.problemsNaming(t, ft)
				// Two values may well have the same problem; until then,
				// the problems of the last round are no answer.
				if err == nil && strings.Join(problems, "\n") == lastProblems[ft.String()] && time.Since(start) < 5*time.Second {
					return fmt.Errorf("problems of the last round %v", problems)
				}
				return err
			})
			checkSmall(t, what+": status problem", problems, 2048)
		}
		// Long enough for a retry storm to show, short enough for rounds.
		time.Sleep(1500 * time.Millisecond)
		for _, ft := range fts {
			what := fmt.Sprintf("round %d (%s), %s", round, kind.name, ft)
			evs := k.AllWarningsOf(t, ft.Namespace, ft.Name, ft.Kind)
			n := warningCount(evs)
			problems, _ := k.problemsNaming(t, ft)
			added := n - warned[ft.String()]
			if int(added) > len(problems) {
				t.Errorf("%s: %d Warnings for %d problems: %v", what, added, len(problems), messages(evs))
			}
			// A new problem is a new Warning, or one more count on the
			// Event client-go combines similar ones into, until its flood
			// filter holds the object's Warnings back.
			if added == 0 && n < eventFloodBurst && strings.Join(problems, "\n") != lastProblems[ft.String()] {
				t.Errorf("%s: no Warning for new problems %v", what, problems)
			}
			warned[ft.String()], lastProblems[ft.String()] = n, strings.Join(problems, "\n")
			var msgs []string
			for _, e := range evs {
				msgs = append(msgs, e.Message)
			}
			checkSmall(t, what+": Warning", msgs, 2048)
		}
		if o.Steady != nil {
			if err := o.Steady(); err != nil {
				t.Fatalf("round %d (%s): the last good binding no longer serves: %v", round, kind.name, err)
			}
		}
	}

	// A burst of distinct large values, faster than podlb reconciles:
	// what it keeps of each must not pile up.
	pushed := 0
	for i := range 24 {
		for _, ft := range fts {
			v := atTheLimit.gen(rng, ft.Good, k.annotationRoom(t, ft))
			pushed += len(v)
			k.annotateObject(t, ft, v)
		}
		if i%4 == 3 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	for _, ft := range fts {
		Eventually(t, 30*time.Second, "after the burst, "+ft.String()+": status names the annotation", func() error {
			_, err := k.problemsNaming(t, ft)
			return err
		})
	}

	for _, ft := range fts {
		k.annotateObject(t, ft, ft.Good)
	}
	for _, ft := range fts {
		Eventually(t, 60*time.Second, ft.String()+": good value back, every problem cleared", func() error {
			if ps := k.problemsOf(t, ft); len(ps) != 0 {
				return fmt.Errorf("problems %v", ps)
			}
			return nil
		})
	}
	if o.Steady != nil {
		if err := o.Steady(); err != nil {
			t.Fatalf("after the good values were restored: %v", err)
		}
	}
	if n := reconcilePanics(t) - panics; n != 0 {
		t.Errorf("%v reconciler panics while fuzzing", n)
	}
	heapAfter := liveHeap()
	t.Logf("live heap %d KiB before, %d KiB after; the burst pushed %d KiB", heapBefore>>10, heapAfter>>10, pushed>>10)
	if grown := int64(heapAfter) - int64(heapBefore); grown > int64(pushed/2) {
		t.Errorf("the live heap grew by %d KiB over fuzzing (the burst pushed %d KiB): podlb keeps what it was given", grown>>10, pushed>>10)
	}
}

// annotationRoom is how long the fuzzed value may be for the object's
// annotations to stay under the API server's limit, podlb's status
// included.
func (k Kube) annotationRoom(t testing.TB, ft FuzzTarget) int {
	used := len(ft.Key)
	for key, v := range k.annotationsOf(t, ft) {
		if key != ft.Key && key != "podlb.io/status" {
			used += len(key) + len(v)
		}
	}
	return AnnotationsSizeLimit - used - statusRoom
}

func (k Kube) annotationsOf(t testing.TB, ft FuzzTarget) map[string]string {
	t.Helper()
	switch ft.Kind {
	case "Service":
		svc, err := k.Client.CoreV1().Services(ft.Namespace).Get(ctx, ft.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return svc.Annotations
	case "Ingress":
		if ing := k.GetIngress(t, ft.Namespace, ft.Name); ing != nil {
			return ing.Annotations
		}
		t.Fatalf("%s is gone", ft)
	}
	t.Fatalf("cannot fuzz a %s", ft.Kind)
	return nil
}

func (k Kube) annotateObject(t testing.TB, ft FuzzTarget, value string) {
	t.Helper()
	b, _ := json.Marshal(value)
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, ft.Key, b)
	var err error
	switch ft.Kind {
	case "Service":
		_, err = k.Client.CoreV1().Services(ft.Namespace).Patch(ctx, ft.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	case "Ingress":
		_, err = k.Client.NetworkingV1().Ingresses(ft.Namespace).Patch(ctx, ft.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	default:
		t.Fatalf("cannot fuzz a %s", ft.Kind)
	}
	if err != nil {
		t.Fatalf("annotating %s with %d bytes: %v", ft, len(value), err)
	}
}

// problemsOf lists the problems of the object's podlb status.
func (k Kube) problemsOf(t testing.TB, ft FuzzTarget) []string {
	t.Helper()
	if ft.Kind == "Ingress" {
		if st := k.IngressStatus(t, ft.Namespace, ft.Name); st != nil {
			return st.Problems
		}
		return nil
	}
	if st := k.Status(t, ft.Namespace, ft.Name); st != nil {
		return st.Problems
	}
	return nil
}

// problemsNaming returns the object's problems, and an error unless one
// names the fuzzed annotation. (Whether it also says that the last good
// value stays in force depends on the value: an unknown key next to the
// good entries leaves them in force as they are; Steady checks that
// they serve.)
func (k Kube) problemsNaming(t testing.TB, ft FuzzTarget) ([]string, error) {
	ps := k.problemsOf(t, ft)
	for _, p := range ps {
		if strings.Contains(p, ft.Key) {
			return ps, nil
		}
	}
	return ps, fmt.Errorf("problems %v", ps)
}

func warningCount(evs []corev1.Event) int32 {
	var n int32
	for _, e := range evs {
		n += max(e.Count, 1)
	}
	return n
}

func messages(evs []corev1.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, abbreviate(e.Message, 200))
	}
	return out
}

// checkSmall fails the test for any text longer than limit: a message
// that quotes what it was given whole grows with the input.
func checkSmall(t testing.TB, what string, texts []string, limit int) {
	t.Helper()
	for _, s := range texts {
		if len(s) > limit {
			t.Errorf("%s of %d bytes (at most %d): %s", what, len(s), limit, abbreviate(s, 200))
		}
	}
}

func abbreviate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("… (%d bytes)", len(s))
}

// liveHeap is the bytes of live objects in this process, where the
// end-to-end suites run the controller.
func liveHeap() uint64 {
	var m runtime.MemStats
	for range 2 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// reconcilePanics sums controller-runtime's count of panics its
// reconcilers recovered from.
func reconcilePanics(t testing.TB) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() == "controller_runtime_reconcile_panics_total" {
			n += sumCounters(f.GetMetric())
		}
	}
	return n
}

func sumCounters(ms []*dto.Metric) float64 {
	var n float64
	for _, m := range ms {
		n += m.GetCounter().GetValue()
	}
	return n
}

// A fuzzKind generates broken annotation values from the good one, at
// most room bytes long. Every value is invalid by construction: podlb
// must keep the good value in force rather than act on it.
type fuzzKind struct {
	name string
	gen  func(rng *rand.Rand, good string, room int) string
}

var atTheLimit = fuzzKind{"a value at the size limit", func(rng *rand.Rand, good string, room int) string {
	return atLeaf(rng, good, func(s string) string { return jsonString(randomText(rng, max(room-len(s)-16, 1), false)) })
}}

var fuzzKinds = []fuzzKind{
	{"random JSON", func(rng *rand.Rand, _ string, _ int) string { return randomTop(rng) }},
	{"a field of the wrong type", func(rng *rand.Rand, good string, _ int) string {
		return atLeaf(rng, good, func(string) string {
			return []string{`12345`, `-1e308`, `true`, `[]`, `{}`, `["a", 1]`, `{"x~": 1}`}[rng.Intn(7)]
		})
	}},
	{"an unknown field", func(rng *rand.Rand, good string, _ int) string {
		return withUnknownField(rng, good, jsonString("~"+randomKey(rng)), randomJSON(rng, 2))
	}},
	{"unicode", func(rng *rand.Rand, good string, _ int) string {
		return atLeaf(rng, good, func(string) string { return jsonString(randomText(rng, 64, true)) })
	}},
	{"control characters and lone surrogates", func(rng *rand.Rand, good string, _ int) string {
		raw := []string{`"\ud800x"`, `"\udfff"`, "\"a\x01b\"", "\"tab\there\"", `"\u0000"`, `"\u202e` + "lanif" + `"`}
		return atLeaf(rng, good, func(string) string { return raw[rng.Intn(len(raw))] })
	}},
	{"truncated", func(rng *rand.Rand, good string, _ int) string {
		return good[:1+rng.Intn(len(good)-1)]
	}},
	{"nesting deeper than any decoder allows", func(rng *rand.Rand, good string, _ int) string {
		d := 20000 + rng.Intn(1000)
		return atLeaf(rng, good, func(string) string { return strings.Repeat("[", d) + strings.Repeat("]", d) })
	}},
	{"deep nesting", func(rng *rand.Rand, good string, _ int) string {
		d := 5000 + rng.Intn(1000)
		return atLeaf(rng, good, func(string) string { return strings.Repeat(`{"~a":`, d) + "1" + strings.Repeat("}", d) })
	}},
	{"a huge value", func(rng *rand.Rand, good string, room int) string {
		return atLeaf(rng, good, func(string) string { return jsonString(randomText(rng, min(64<<10+rng.Intn(64<<10), room/2), true)) })
	}},
	{"a huge key", func(rng *rand.Rand, good string, room int) string {
		key := randomText(rng, min(64<<10+rng.Intn(64<<10), room/2), false) + "~"
		return withUnknownField(rng, good, jsonString(key), "1")
	}},
	{"thousands of keys", func(rng *rand.Rand, good string, _ int) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range 2000 + rng.Intn(2000) {
			fmt.Fprintf(&b, "%q: {}, ", fmt.Sprintf("%s~%d", randomKey(rng), i))
		}
		return b.String() + `"~": ` + good + "}"
	}},
	atTheLimit,
}

// atLeaf replaces one value of the good annotation (a string, number or
// bool at any depth, or the whole value when it has none) with what
// replace makes of its JSON text.
func atLeaf(rng *rand.Rand, good string, replace func(leaf string) string) string {
	var v any
	if err := json.Unmarshal([]byte(good), &v); err != nil {
		panic(fmt.Sprintf("the good value %q is not JSON: %v", good, err))
	}
	var paths [][]any
	var walk func(v any, path []any)
	walk = func(v any, path []any) {
		switch x := v.(type) {
		case map[string]any:
			for _, k := range sortedKeys(x) {
				walk(x[k], append(append([]any(nil), path...), k))
			}
		case []any:
			for i, e := range x {
				walk(e, append(append([]any(nil), path...), i))
			}
		default:
			paths = append(paths, path)
		}
	}
	walk(v, nil)
	const marker = "\x00fuzz\x00"
	if len(paths) == 0 {
		// Nothing to replace: the value itself goes in an unknown field.
		return `{"~fuzz": ` + replace(good) + `}`
	}
	path := paths[rng.Intn(len(paths))]
	leaf, _ := json.Marshal(lookup(v, path))
	v = setPath(v, path, marker)
	b, _ := json.Marshal(v)
	return strings.Replace(string(b), jsonString(marker), replace(string(leaf)), 1)
}

func sortedKeys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func lookup(v any, path []any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			v = v.(map[string]any)[k]
		case int:
			v = v.([]any)[k]
		}
	}
	return v
}

func setPath(v any, path []any, to any) any {
	if len(path) == 0 {
		return to
	}
	switch k := path[0].(type) {
	case string:
		m := v.(map[string]any)
		m[k] = setPath(m[k], path[1:], to)
	case int:
		l := v.([]any)
		l[k] = setPath(l[k], path[1:], to)
	}
	return v
}

// withUnknownField adds key (JSON text, holding a "~" so that it can be
// neither a port nor a field) to one of the good value's objects.
func withUnknownField(rng *rand.Rand, good, key, value string) string {
	var v any
	if err := json.Unmarshal([]byte(good), &v); err != nil {
		panic(fmt.Sprintf("the good value %q is not JSON: %v", good, err))
	}
	var objects []map[string]any
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			objects = append(objects, x)
			for _, k := range sortedKeys(x) {
				walk(x[k])
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	const marker = "\x00fuzz\x00"
	objects[rng.Intn(len(objects))][marker] = nil
	b, _ := json.Marshal(v)
	return strings.Replace(string(b), jsonString(marker)+":null", key+": "+value, 1)
}

// randomTop is random JSON that is never a valid annotation: a scalar or
// array where an object belongs, or an object whose keys cannot be a port
// nor a field (they hold a "~").
func randomTop(rng *rand.Rand) string {
	switch rng.Intn(4) {
	case 0:
		return jsonString(randomText(rng, rng.Intn(40), true))
	case 1:
		return `[` + randomJSON(rng, 3) + `]`
	default:
		var b strings.Builder
		b.WriteString("{")
		for i := range 1 + rng.Intn(4) {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(jsonString(randomKey(rng) + "~"))
			b.WriteString(": ")
			b.WriteString(randomJSON(rng, 3))
		}
		b.WriteString("}")
		return b.String()
	}
}

// randomJSON is a random JSON value nested at most depth deep; at the top
// it is not null (which decodes as an empty, valid annotation).
func randomJSON(rng *rand.Rand, depth int) string {
	n := 6
	if depth <= 0 {
		n = 4
	}
	switch rng.Intn(n) {
	case 0:
		return strconv.FormatFloat((rng.Float64()-0.5)*math1e12(rng), 'g', -1, 64)
	case 1:
		return []string{"true", "false", "1", "0"}[rng.Intn(4)]
	case 2, 3:
		return jsonString(randomText(rng, rng.Intn(40), true))
	case 4:
		var parts []string
		for range rng.Intn(4) {
			parts = append(parts, randomJSON(rng, depth-1))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	default:
		var parts []string
		for range rng.Intn(4) {
			parts = append(parts, jsonString(randomKey(rng))+": "+randomJSON(rng, depth-1))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
}

func math1e12(rng *rand.Rand) float64 {
	return []float64{1, 1e3, 1e12, 1e300}[rng.Intn(4)]
}

func randomKey(rng *rand.Rand) string {
	return randomText(rng, 1+rng.Intn(12), rng.Intn(2) == 0)
}

// unicodeRunes are characters that trip naive handling: accents and
// combining marks, right-to-left and zero-width ones, wide ones,
// emoji beyond the basic plane, and quotes.
var unicodeRunes = []rune("aé\u0301\u202e\u200b\u200d\ufeffЖ中ﷺ😀🏳️\u2028\"\\'<>&%\u00a0")

// randomText is n bytes or so of random text; with wild, of unicodeRunes
// as much as of ASCII.
func randomText(rng *rand.Rand, n int, wild bool) string {
	var b strings.Builder
	for b.Len() < n {
		if wild && rng.Intn(2) == 0 {
			b.WriteRune(unicodeRunes[rng.Intn(len(unicodeRunes))])
			continue
		}
		b.WriteByte(byte('a' + rng.Intn(26)))
	}
	return b.String()
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
