package tools

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/tlswatch/tlswatch/watch"
)

// Prompt is a prompt and its handler.
type Prompt struct {
	Def     mcp.Prompt
	Handler server.PromptHandlerFunc
}

// AllPrompts is the inventory of prompts: ready-made requests a host can
// offer its user, each steering the agent to the right tools in order.
func AllPrompts(Deps) []Prompt {
	return []Prompt{diagnoseEndpointPrompt(), fleetReportPrompt()}
}

func userPrompt(description, text string) *mcp.GetPromptResult {
	return &mcp.GetPromptResult{
		Description: description,
		Messages:    []mcp.PromptMessage{mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent(text))},
	}
}

func diagnoseEndpointPrompt() Prompt {
	def := mcp.NewPrompt("diagnose_endpoint",
		mcp.WithPromptTitle("Diagnose an endpoint"),
		mcp.WithPromptDescription("Find out why clients fail to connect to an HTTPS or MCP server, and what exactly to fix: check_tls, then inspect_chain, then the fix for each finding."),
		mcp.WithArgument("target", mcp.ArgumentDescription("The URL or host[:port] that fails, e.g. https://mcp.example.com/mcp"), mcp.RequiredArgument()),
	)
	return Prompt{Def: def, Handler: func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		target := strings.TrimSpace(req.Params.Arguments["target"])
		if target == "" {
			return nil, fmt.Errorf("target: required")
		}
		return userPrompt("Diagnose "+target, fmt.Sprintf(
			"Clients fail to connect to %[1]s. Diagnose it with tlswatch:\n"+
				"1. Call check_tls with target %[2]q. Read status, reachable, trusted and every finding.\n"+
				"2. If a finding concerns the chain (incomplete_chain, untrusted_root, chain_order, root_in_chain, expired_intermediate, self_signed), "+
				"call inspect_chain with the same target for the served certificates, the verified paths and what AIA supplies.\n"+
				"3. If the target is an MCP URL and TLS is fine, call check_mcp_endpoint to confirm it answers MCP.\n"+
				"Then answer: the cause in one or two sentences; for each warning or critical finding, the concrete fix for the server operator "+
				"(for example: serve fullchain.pem instead of cert.pem; renew and reload; add the host name to the certificate's SANs; enable TLS 1.2); "+
				"and whether agents will work once it is fixed.", target, target)), nil
	}}
}

func fleetReportPrompt() Prompt {
	def := mcp.NewPrompt("fleet_report",
		mcp.WithPromptTitle("Fleet report"),
		mcp.WithPromptDescription("A table of the watched endpoints that expire soon, have expired or are down, with what to do first."),
		mcp.WithArgument("within_days", mcp.ArgumentDescription("Expiry horizon in days (default 30)")),
	)
	return Prompt{Def: def, Handler: func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		days := watch.DefaultExpiringDays
		if v := strings.TrimSpace(req.Params.Arguments["within_days"]); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > watch.MaxExpiringDays {
				return nil, fmt.Errorf("within_days: %q is not a whole number of days from 0 to %d", v, watch.MaxExpiringDays)
			}
			days = n
		}
		return userPrompt(fmt.Sprintf("Fleet report (%d days)", days), fmt.Sprintf(
			"Report on the TLS health of the endpoints tlswatch watches.\n"+
				"1. Call list_expiring with within_days %d, and list_watches for the totals.\n"+
				"2. Show one markdown table, soonest expiry first, with columns: target, state (up/down), status, expiry stage, days remaining, main finding.\n"+
				"3. Below it, list what to do first: down endpoints, then expired certificates, then the ones expiring within 7 days.\n"+
				"If nothing expires within %d days and nothing is down, say so in one line with the number of watches.", days, days)), nil
	}}
}

// completions offers argument completion for the prompts: watched targets
// for diagnose_endpoint's target, the usual horizons for within_days.
type completions struct{ d Deps }

func (c completions) CompletePromptArgument(ctx context.Context, prompt string, arg mcp.CompleteArgument, _ mcp.CompleteContext) (*mcp.Completion, error) {
	var values []string
	switch {
	case prompt == "diagnose_endpoint" && arg.Name == "target":
		var err error
		values, err = c.watchValues(ctx, arg.Value, func(w watch.Watch) string { return targetLabel(w.Target, w.ID) })
		if err != nil {
			return nil, fmt.Errorf("complete target: %w", err)
		}
	case prompt == "fleet_report" && arg.Name == "within_days":
		values = []string{"7", "14", "30", "60", "90"}
	}
	return completionOf(values, arg.Value), nil
}

// CompleteResourceArgument completes tlswatch://watches/{id} with watch ids.
func (c completions) CompleteResourceArgument(ctx context.Context, uri string, arg mcp.CompleteArgument, _ mcp.CompleteContext) (*mcp.Completion, error) {
	var values []string
	if arg.Name == "id" {
		var err error
		values, err = c.watchValues(ctx, arg.Value, func(w watch.Watch) string { return w.ID })
		if err != nil {
			return nil, fmt.Errorf("complete id: %w", err)
		}
	}
	return completionOf(values, arg.Value), nil
}

// maxCompletions is how many values a completion offers.
const maxCompletions = 100

// watchValues reads the watches a page at a time for the values (value of
// each) that start with prefix, and stops once it has more than a
// completion shows: 100,000 watches are never read into one answer.
func (c completions) watchValues(ctx context.Context, prefix string, value func(watch.Watch) string) ([]string, error) {
	if c.d.Watch == nil {
		return nil, nil
	}
	seen := map[string]bool{}
	errEnough := errors.New("enough")
	err := watch.EachPage(ctx, c.d.Watch, watch.MaxPageLimit, func(ws []watch.Watch) error {
		for _, w := range ws {
			if v := value(w); strings.HasPrefix(v, prefix) {
				seen[v] = true
			}
		}
		if len(seen) > maxCompletions {
			return errEnough
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, err
	}
	return slices.Collect(maps.Keys(seen)), nil
}

// completionOf keeps the values starting with prefix, sorted, at most 100.
func completionOf(values []string, prefix string) *mcp.Completion {
	out := []string{}
	for _, v := range values {
		if strings.HasPrefix(v, prefix) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	total := len(out)
	if len(out) > maxCompletions {
		out = out[:maxCompletions]
	}
	return &mcp.Completion{Values: out, Total: total, HasMore: total > len(out)}
}
