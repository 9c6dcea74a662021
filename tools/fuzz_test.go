package tools

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

// FuzzToolArguments feeds arbitrary JSON to every tool's handler (fake
// probe and watcher): whatever arrives, the answer is a result, never a
// panic or a Go error, and a rejection names a field.
func FuzzToolArguments(f *testing.F) {
	for _, seed := range []string{
		`{}`, `null`, `[]`, `"x"`, `{"target":"example.com"}`, `{"target":"[::1]:443","ip":"::1","sni":"a.b"}`,
		`{"target":"example.com:99999"}`, `{"target":"https://u@h/p"}`, `{"target":"h","timeout_ms":1e309}`,
		`{"targets":[{"target":"a"},{"target":"b:0"}]}`, `{"targets":[1,2]}`, `{"target":"h","schedule":"@every 0s"}`,
		`{"target":"h","thresholds_days":[30,-1]}`, `{"id":"w_1","limit":-5}`, `{"within_days":null}`, `{"pem":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"}`,
		`{"target":"h","starttls":"smtp"}`, `{"url":"https://h/mcp","target":"x"}`, `{"target":"\u0000\uffff"}`,
	} {
		f.Add(seed)
	}
	// Every engine is faked: a fuzzed target must never reach DNS or a socket.
	tools := AllTools(Deps{Probe: fakeProbe, InspectChain: fakeInspect, MCPCheck: fakeMCPCheck, Watch: newFakeWatch(f)})
	f.Fuzz(func(t *testing.T, args string) {
		for _, tl := range tools {
			req := mcp.CallToolRequest{}
			req.Params.Name = tl.Def.Name
			req.Params.Arguments = json.RawMessage(args)
			res, err := tl.Handler(context.Background(), req)
			if err != nil || res == nil {
				t.Fatalf("%s(%s): result %v, error %v", tl.Def.Name, args, res, err)
			}
			if res.IsError && len(res.Content) == 0 {
				t.Fatalf("%s(%s): isError without a message", tl.Def.Name, args)
			}
		}
	})
}
