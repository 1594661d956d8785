// A reply's tokens-and-cost line (static/chat/usage.js) and which agents the home page's team
// picker offers (static/chat/teams.js): pure rules.
import assert from "node:assert/strict";
import { test } from "node:test";

import { agentAllowed } from "../teams.js";
import { COST_FORMAT, replyTokens, usageLine } from "../usage.js";

const t = (key, vars) => ({ usage_tokens: "{tokens} tokens", usage_cost: "cost {cost}" })[key]
  .replace(/\{(\w+)\}/g, (m, name) => String(vars[name]));
const en = (n, options) => new Intl.NumberFormat("en-US", options).format(n);
const reply = (fields) => ({ role: "assistant", status: "completed", token_usage: null, cost: null, ...fields });

test("tokens are the vendor's total, else input + output, else none", () => {
  assert.equal(replyTokens({ prompt_tokens: 10, completion_tokens: 5, total_tokens: 16 }), 16);
  assert.equal(replyTokens({ prompt_tokens: 10, completion_tokens: null, total_tokens: null }), 10);
  assert.equal(replyTokens({ prompt_tokens: null, completion_tokens: null, total_tokens: null }), null);
  assert.equal(replyTokens(null), null);
  assert.equal(replyTokens({ prompt_tokens: "10", completion_tokens: 1.5 }), null);
});

test("a finished reply shows its tokens and its cost, grouped and to six decimals at most", () => {
  const usage = { prompt_tokens: 1200, completion_tokens: 300, total_tokens: 1500 };
  assert.equal(usageLine(reply({ token_usage: usage, cost: 0.0081 }), t, en), "1,500 tokens · cost 0.0081");
  assert.equal(usageLine(reply({ token_usage: usage, cost: 2.5 }), t, en), "1,500 tokens · cost 2.50");
  assert.equal(usageLine(reply({ token_usage: usage, cost: 0.0000004 }), t, en), "1,500 tokens · cost 0.00");
  assert.equal(en(0.000042, COST_FORMAT), "0.000042");
  // No prices: tokens only; no usage: nothing.
  assert.equal(usageLine(reply({ token_usage: usage }), t, en), "1,500 tokens");
  assert.equal(usageLine(reply({}), t, en), "");
});

test("streaming replies, user messages and hostile costs show nothing of the kind", () => {
  const usage = { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 };
  assert.equal(usageLine(reply({ status: "streaming", token_usage: usage, cost: 1 }), t, en), "");
  assert.equal(usageLine({ role: "user", status: "completed", token_usage: usage, cost: 1 }, t, en), "");
  assert.equal(usageLine(reply({ token_usage: usage, cost: "1e9" }), t, en), "2 tokens");
  assert.equal(usageLine(reply({ token_usage: usage, cost: Number.NaN }), t, en), "2 tokens");
});

test("an agent open to every team is offered for any team; a restricted one only for its own", () => {
  assert.equal(agentAllowed(undefined, "support"), true);
  assert.equal(agentAllowed(null, ""), true);
  assert.equal(agentAllowed("billing support", "support"), true);
  assert.equal(agentAllowed("billing", "support"), false);
  assert.equal(agentAllowed("", "support"), false);
  assert.equal(agentAllowed("billing", ""), false);
});
