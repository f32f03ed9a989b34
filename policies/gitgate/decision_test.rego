package gitgate_test

import data.gitgate

alice_eng := {"sub": "alice", "groups": ["eng"]}

bob_nogroups := {"sub": "bob", "groups": []}

carol_sales := {"sub": "carol", "groups": ["sales"]}

req(identity, method, extra) := object.union(
	{
		"identity": identity,
		"mcp": object.union({"method": method}, extra),
		"upstream": {"name": "demo", "transport": "stdio"},
		"request": {"id": "r1", "time_ns": 0},
	},
	{},
)

call(identity, tool) := req(identity, "tools/call", {"tool": tool, "arguments": {}})

test_initialize_allowed_for_anyone if {
	d := gitgate.decision with input as req(bob_nogroups, "initialize", {})
	d.allow
	d.risk == "low"
	d.credential.scopes == ["initialize"]
}

test_tools_list_allowed_for_anyone if {
	d := gitgate.decision with input as req(bob_nogroups, "tools/list", {})
	d.allow
}

test_eng_may_call_any_tool if {
	d := gitgate.decision with input as call(alice_eng, "get-tiny-image")
	d.allow
	d.approval.required == false
	d.credential == {"ttl_seconds": 60, "scopes": ["tools/call:get-tiny-image"]}
	d.reasons == ["tools/call of get-tiny-image allowed for alice (groups: [eng])"]
}

test_no_groups_may_call_public_tools if {
	every tool in ["echo", "get-sum"] {
		d := gitgate.decision with input as call(bob_nogroups, tool)
		d.allow
	}
}

test_no_groups_denied_other_tools if {
	d := gitgate.decision with input as call(bob_nogroups, "get-tiny-image")
	not d.allow
	d.reasons == ["tools/call of get-tiny-image denied: bob (groups: []) may only call echo, get-sum"]
}

test_other_group_treated_like_no_group if {
	d := gitgate.decision with input as call(carol_sales, "get-env")
	not d.allow
	d.risk == "high"
	d.approval.required == false
}

test_get_env_is_high_risk_and_needs_approval if {
	d := gitgate.decision with input as call(alice_eng, "get-env")
	d.allow
	d.risk == "high"
	d.approval == {"required": true, "approvers": ["eng"], "min_approvals": 1, "ttl_seconds": 900}
	"get-env is high risk and needs 1 approval(s)" in d.reasons
}

demo_detectors := ["email", "aws_access_key", "aws_secret_key", "github_token", "private_key", "jwt", "bearer_token"]

test_demo_responses_errors_and_recorded_arguments_are_masked if {
	d := gitgate.decision with input as call(bob_nogroups, "echo")
	d.mask == [
		{"path": "$.result", "detectors": demo_detectors},
		{"path": "$.error", "detectors": demo_detectors},
		{"path": "$.params", "detectors": demo_detectors},
	]
}

test_an_upstream_without_mask_rules_still_masks_credentials if {
	i := object.union(call(bob_nogroups, "echo"), {"upstream": {"name": "bare", "transport": "http"}})
	d := gitgate.decision with input as i
		with data.config.upstreams.bare as {"full_access_groups": [], "public_tools": ["echo"], "high_risk_tools": {}}
	d.allow
	d.mask == gitgate.default_mask
	{r.path | some r in d.mask} == {"$.result", "$.error", "$.params"}
	every r in d.mask {
		"jwt" in r.detectors
		"bearer_token" in r.detectors
		"private_key" in r.detectors
	}
}

test_resources_read_for_full_access_only if {
	ok := gitgate.decision with input as req(alice_eng, "resources/read", {"uri": "demo://resource/static/document/architecture.md"})
	ok.allow
	ok.reasons == ["resources/read of demo://resource/static/document/architecture.md allowed for alice (groups: [eng])"]
	no := gitgate.decision with input as req(bob_nogroups, "resources/read", {"uri": "demo://x"})
	not no.allow
	no.reasons == ["resources/read denied: bob (groups: []) is not in a full-access group"]
}

test_prompts_get_for_full_access_only if {
	ok := gitgate.decision with input as req(alice_eng, "prompts/get", {"prompt": "simple-prompt"})
	ok.allow
	no := gitgate.decision with input as req(bob_nogroups, "prompts/get", {"prompt": "simple-prompt"})
	not no.allow
}

test_unknown_method_denied if {
	d := gitgate.decision with input as req(alice_eng, "vendor/frobnicate", {})
	not d.allow
	d.reasons == ["method vendor/frobnicate is not known to this policy: no rule names it, so it is refused"]
}

test_tasks_for_full_access_only if {
	every m in ["tasks/get", "tasks/list", "tasks/result", "tasks/cancel", "tasks/update"] {
		ok := gitgate.decision with input as req(alice_eng, m, {})
		ok.allow
		ok.reasons == [concat("", [m, " allowed for alice (groups: [eng])"])]
		no := gitgate.decision with input as req(bob_nogroups, m, {})
		not no.allow
		no.reasons == [concat("", [m, " denied: bob (groups: []) is not in a full-access group"])]
	}
}

test_every_method_of_both_revisions_is_known if {
	methods := [
		"initialize", "ping", "logging/setLevel", "server/discover", "subscriptions/listen",
		"tools/list", "tools/call", "resources/list", "resources/templates/list", "resources/read",
		"resources/subscribe", "resources/unsubscribe", "prompts/list", "prompts/get", "completion/complete",
		"tasks/get", "tasks/list", "tasks/result", "tasks/cancel", "tasks/update",
	]
	every m in methods {
		d := gitgate.decision with input as req(alice_eng, m, {"tool": "echo", "uri": "demo://x", "prompt": "p"})
		every r in d.reasons {
			not contains(r, "is not known to this policy")
		}
	}
}

test_unknown_upstream_denied if {
	i := object.union(call(alice_eng, "echo"), {"upstream": {"name": "elsewhere", "transport": "http"}})
	d := gitgate.decision with input as i
	not d.allow
	d.reasons == ["upstream elsewhere is not governed by this policy"]
	d.mask == []
}

test_decision_shape_is_complete if {
	d := gitgate.decision with input as req(bob_nogroups, "ping", {})
	object.keys(d) == {"allow", "reasons", "risk", "approval", "mask", "credential"}
}

test_tool_calls_carry_the_upstream_rate if {
	d := gitgate.decision with input as call(bob_nogroups, "echo")
	d.rate == {"calls": 120, "window_seconds": 60}
}

test_changed_tool_is_refused if {
	i := req(alice_eng, "tools/call", {"tool": "echo", "arguments": {}, "tool_changed": true})
	d := gitgate.decision with input as i
	not d.allow
	d.reasons == ["tools/call of echo denied: the tool changed since this session first listed it"]
}

test_listing_asks_about_each_tool if {
	visible := gitgate.decision with input as req(bob_nogroups, "tools/call", {"tool": "echo", "listing": true})
	visible.allow
	hidden := gitgate.decision with input as req(bob_nogroups, "tools/call", {"tool": "get-env", "listing": true})
	not hidden.allow
}

test_credential_ttl_defaults_without_upstream_config if {
	i := object.union(req(alice_eng, "ping", {}), {"upstream": {"name": "elsewhere", "transport": "http"}})
	d := gitgate.decision with input as i
	d.credential.ttl_seconds == 60
}

test_protocol_notifications_allowed_for_anyone if {
	every m in ["notifications/initialized", "notifications/cancelled", "notifications/progress", "notifications/roots/list_changed"] {
		d := gitgate.decision with input as req(bob_nogroups, m, {"kind": "notification"})
		d.allow
		d.reasons == [concat("", [m, " allowed for bob (groups: [])"])]
	}
}

test_other_notifications_denied if {
	d := gitgate.decision with input as req(alice_eng, "notifications/anything", {"kind": "notification"})
	not d.allow
	d.reasons == ["notification notifications/anything is not allowed by policy"]
}

test_a_notification_named_like_a_request_is_not_one if {
	d := gitgate.decision with input as req(alice_eng, "tools/call", {"kind": "notification", "tool": "echo", "arguments": {}})
	not d.allow
	d.approval.required == false
}

test_answers_to_upstream_requests_allowed if {
	every m in ["sampling/createMessage", "elicitation/create", "roots/list", "ping"] {
		d := gitgate.decision with input as req(bob_nogroups, m, {"kind": "response"})
		d.allow
		d.reasons == [concat("", ["answer to ", m, " allowed for bob (groups: [])"])]
	}
}

test_answer_to_another_kind_of_request_denied if {
	d := gitgate.decision with input as req(alice_eng, "tools/call", {"kind": "response"})
	not d.allow
	d.reasons == ["response tools/call is not allowed by policy"]
}

test_listen_stream_allowed_for_anyone if {
	d := gitgate.decision with input as req(bob_nogroups, "subscriptions/listen", {"kind": "request"})
	d.allow
}

test_completion_is_content_access if {
	ok := gitgate.decision with input as req(alice_eng, "completion/complete", {"prompt": "greet"})
	ok.allow
	ok.reasons == ["completion/complete of greet allowed for alice (groups: [eng])"]
	no := gitgate.decision with input as req(bob_nogroups, "completion/complete", {"uri": "test://items/{id}"})
	not no.allow
	no.reasons == ["completion/complete denied: bob (groups: []) is not in a full-access group"]
}
