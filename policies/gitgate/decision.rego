# The default gitgate policy: what the embedded demo runs.
#
# Entrypoint: gitgate/decision. It always produces one object that validates
# against schemas/decision.schema.json; the gateway denies anything else.
package gitgate

cfg := data.config

upstream_cfg := cfg.upstreams[input.upstream.name]

groups := {g | some g in input.identity.groups}

full_access if {
	some g in upstream_cfg.full_access_groups
	g in groups
}

# What the client sent: a request, a notification, or its answer to a request the
# upstream sent it (then input.mcp.method is that request's method). Records made
# before gitgate said so were requests.
kind := object.get(input.mcp, "kind", "request")

request if kind == "request"

protocol_method if {
	request
	input.mcp.method in cfg.protocol_methods
}

list_method if {
	request
	input.mcp.method in cfg.list_methods
}

# Reading resources and prompts, and completing their arguments, is for full-access callers only.
content_method if {
	request
	input.mcp.method in {"resources/read", "resources/subscribe", "resources/unsubscribe", "prompts/get", "completion/complete"}
}

tool_call if {
	request
	input.mcp.method == "tools/call"
}

# The tasks extension (2025-11-25 tasks, 2026-07-28 io.modelcontextprotocol/tasks): reading, waiting
# for, updating and cancelling tasks a tools/call started is for full-access callers only.
task_method if {
	request
	input.mcp.method in object.get(cfg, "task_methods", [])
}

# A method no rule of this policy names (an extension it does not know, a typo): refused, and said so.
known_method if protocol_method

known_method if list_method

known_method if tool_call

known_method if content_method

known_method if task_method

# The protocol's own client notifications (gitgate has already checked that each
# makes sense where it was sent: a cancellation names the caller's own request in
# flight, progress belongs to an upstream request the caller was shown).
client_notification if {
	kind == "notification"
	input.mcp.method in cfg.client_notifications
}

# The caller's answer to a request the upstream sent it (sampling, elicitation, roots).
client_response if {
	kind == "response"
	input.mcp.method in cfg.server_requests
}

tool_permitted if full_access

tool_permitted if input.mcp.tool in upstream_cfg.public_tools

# A tool whose description or schemas changed since the caller's session listed it
# (a "rug pull") is refused until a new session sees it as it is now.
rug_pulled if {
	tool_call
	input.mcp.tool_changed == true
}

high_risk if {
	tool_call
	upstream_cfg.high_risk_tools[input.mcp.tool]
}

# --- allow -----------------------------------------------------------------

default allow := false

allow if {
	upstream_cfg
	protocol_method
}

allow if {
	upstream_cfg
	list_method
}

allow if {
	tool_call
	tool_permitted
	not rug_pulled
}

allow if {
	content_method
	full_access
}

allow if {
	task_method
	full_access
}

allow if {
	upstream_cfg
	client_notification
}

allow if {
	upstream_cfg
	client_response
}

# --- reasons ---------------------------------------------------------------

# concat, not sprintf: concat runs inside the WASM module, sprintf is a call out to
# the JavaScript host (its arguments serialized both ways) and was a sixth of the
# cost of a decision.

group_text := concat(",", sort([g | some g in groups]))

caller_text := concat("", [input.identity.sub, " (groups: [", group_text, "])"])

reasons contains concat("", ["upstream ", input.upstream.name, " is not governed by this policy"]) if not upstream_cfg

reasons contains concat("", [input.mcp.method, " allowed for ", caller_text]) if {
	upstream_cfg
	protocol_method
}

reasons contains concat("", [input.mcp.method, " allowed for ", caller_text]) if {
	upstream_cfg
	list_method
}

reasons contains concat("", ["tools/call of ", input.mcp.tool, " allowed for ", caller_text]) if {
	tool_call
	tool_permitted
	not rug_pulled
}

reasons contains concat("", ["tools/call of ", input.mcp.tool, " denied: the tool changed since this session first listed it"]) if rug_pulled

reasons contains concat("", ["tools/call of ", input.mcp.tool, " denied: ", caller_text, " may only call ", concat(", ", upstream_cfg.public_tools)]) if {
	tool_call
	upstream_cfg
	not tool_permitted
}

reasons contains concat("", [input.mcp.method, " of ", object.get(input.mcp, "uri", object.get(input.mcp, "prompt", "")), " allowed for ", caller_text]) if {
	content_method
	full_access
}

reasons contains concat("", [input.mcp.method, " denied: ", caller_text, " is not in a full-access group"]) if {
	content_method
	upstream_cfg
	not full_access
}

reasons contains concat("", [input.mcp.method, " allowed for ", caller_text]) if {
	upstream_cfg
	client_notification
}

reasons contains concat("", ["answer to ", input.mcp.method, " allowed for ", caller_text]) if {
	upstream_cfg
	client_response
}

reasons contains concat("", [kind, " ", input.mcp.method, " is not allowed by policy"]) if {
	upstream_cfg
	not request
	not client_notification
	not client_response
}

reasons contains concat("", [input.mcp.method, " allowed for ", caller_text]) if {
	task_method
	full_access
}

reasons contains concat("", [input.mcp.method, " denied: ", caller_text, " is not in a full-access group"]) if {
	task_method
	upstream_cfg
	not full_access
}

reasons contains concat("", ["method ", input.mcp.method, " is not known to this policy: no rule names it, so it is refused"]) if {
	upstream_cfg
	request
	not known_method
}

reasons contains concat("", [input.mcp.tool, " is high risk and needs ", format_int(upstream_cfg.high_risk_tools[input.mcp.tool].min_approvals, 10), " approval(s)"]) if {
	high_risk
	allow
}

# --- risk, approval, masking, credential -----------------------------------

default risk := "low"

risk := "high" if high_risk

default approval := {"required": false}

approval := object.union({"required": true}, upstream_cfg.high_risk_tools[input.mcp.tool]) if {
	high_risk
	allow
}

# Detectors for credentials: whatever else an upstream's data masks, these are always worth it.
secret_detectors := ["aws_access_key", "aws_secret_key", "github_token", "private_key", "jwt", "bearer_token"]

# Without mask rules of its own, a governed upstream still has credentials masked in
# responses and errors, in the params of the upstream's notifications and requests the
# caller receives (log lines, progress messages, sampling and elicitation requests), and
# in the params the audit log records (a caller's own secrets in `arguments` reach the
# upstream as sent, but not the audit repo).
default_mask := [
	{"path": "$.result", "detectors": secret_detectors},
	{"path": "$.error", "detectors": secret_detectors},
	{"path": "$.params", "detectors": secret_detectors},
]

default mask := []

mask := object.get(upstream_cfg, "mask", default_mask)

default credential_ttl := 60

credential_ttl := upstream_cfg.credential_ttl_seconds

scopes contains concat(":", [input.mcp.method, input.mcp.tool]) if tool_call

scopes contains input.mcp.method if not tool_call

# Tool calls are rate limited per caller when the upstream's data says so.
default rate_part := {}

rate_part := {"rate": upstream_cfg.rate} if {
	tool_call
	upstream_cfg.rate
}

decision := object.union(
	{
		"allow": allow,
		"reasons": sort([r | some r in reasons]),
		"risk": risk,
		"approval": approval,
		"mask": mask,
		"credential": {"ttl_seconds": credential_ttl, "scopes": sort([s | some s in scopes])},
	},
	rate_part,
)
