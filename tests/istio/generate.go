package main

import (
	"fmt"
	"os"
	"sync"

	"google.golang.org/protobuf/types/known/anypb"
)

// generate validates every object, then generates the gateway's config and pilot-agent's part.
// A failure of istiod's own code (a test.Failer Fatal) ends generation with the message in Errors;
// validation results are reported either way.
func generate(req request) (resp response) {
	v, err := validateAll(req.Config)
	check(err)
	resp.Validation = v
	t := &failer{}
	defer t.runCleanups()
	defer func() {
		if r := recover(); r != nil {
			if f, ok := r.(fatal); ok {
				resp.Errors = append(resp.Errors, string(f))
				return
			}
			panic(r)
		}
	}()
	var ecds []*anypb.Any
	var agentNames []string
	resp.XDS, ecds, agentNames = generateXDS(t, req)
	if req.Agent != nil {
		resp.AgentECDS = convertWasm(t, req.Agent, ecds)
		resp.AgentSecrets = agentSecrets(t, req.Agent, agentNames)
	}
	return resp
}

// failer is istio's test.Failer for a program: Fatal stops generation (a panic generate
// recovers), Cleanup runs at the end.
type failer struct {
	mu       sync.Mutex
	cleanups []func()
}

type fatal string

func (f *failer) Fail()                          { panic(fatal("failed")) }
func (f *failer) FailNow()                       { panic(fatal("failed")) }
func (f *failer) Fatal(args ...any)              { panic(fatal(fmt.Sprint(args...))) }
func (f *failer) Fatalf(format string, a ...any) { panic(fatal(fmt.Sprintf(format, a...))) }
func (f *failer) Log(args ...any)                { fmt.Fprintln(os.Stderr, args...) }
func (f *failer) Logf(format string, a ...any)   { fmt.Fprintf(os.Stderr, format+"\n", a...) }
func (f *failer) Helper()                        {}
func (f *failer) Skip(args ...any)               { panic(fatal(fmt.Sprint(args...))) }
func (f *failer) TempDir() string {
	d, err := os.MkdirTemp("", "istio-xds")
	check(err)
	f.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

func (f *failer) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *failer) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}
