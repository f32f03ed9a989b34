import type { ImpactReport } from './replay.js';

export const COMMENT_MARKER = '<!-- gitgate:policy-impact -->';

/** `deny->allow` or `deny->allow:high` (only calls where a revision says risk: high). */
export interface Guard {
  readonly transition: string;
  readonly highRiskOnly: boolean;
}

/**
 * Guards when none are given: loosening a high-risk call (deny → allow), and
 * removing an approval requirement (approval → allow, whatever the risk).
 */
export const DEFAULT_GUARDS: readonly string[] = ['deny->allow:high', 'approval->allow'];

/** The guards to apply: the given ones, DEFAULT_GUARDS when none is given, none for `--guard none`. */
export function guardsFrom(given: readonly string[]): Guard[] {
  if (given.length === 0) return DEFAULT_GUARDS.map(parseGuard);
  if (given.length === 1 && given[0]!.trim() === 'none') return [];
  return given.map(parseGuard);
}

const guardText = (g: Guard) => `${g.transition}${g.highRiskOnly ? ':high' : ''}`;

export function parseGuard(text: string): Guard {
  const m = /^(allow|deny|approval)->(allow|deny|approval)(:high)?$/.exec(text.trim());
  if (!m)
    throw new Error(
      `invalid guard "${text}": use e.g. deny->allow or deny->allow:high (outcomes: allow, deny, approval), or none`,
    );
  return { transition: `${m[1]}->${m[2]}`, highRiskOnly: m[3] !== undefined };
}

/** The guards a report hits, with how many decisions hit each. */
export function guardHits(report: ImpactReport, guards: readonly Guard[]): { guard: Guard; count: number }[] {
  return guards
    .map((guard) => ({
      guard,
      count: (guard.highRiskOnly ? report.highRisk : report.transitions)[guard.transition] ?? 0,
    }))
    .filter((h) => h.count > 0);
}

export function toJson(
  report: ImpactReport,
  guards: readonly Guard[] = [],
  hits: readonly { guard: Guard; count: number }[] = [],
): Record<string, unknown> {
  return {
    records: report.records,
    decisions: report.decisions,
    streams: report.streams,
    days: report.days,
    from: report.from ?? null,
    to: report.to ?? null,
    replayed: report.replayed,
    skipped: report.skipped,
    transitions: report.transitions,
    mask_changes: report.maskChanges,
    credential_ttl_changes: report.credentialTtlChanges,
    high_risk: report.highRisk,
    top: report.top,
    examples: report.examples,
    skipped_why: report.skippedWhy,
    guards: guards.map(guardText),
    guard_hits: hits.map((h) => ({ guard: guardText(h.guard), count: h.count })),
  };
}

/** What the replay covered, in words: "42 record(s) in 3 stream(s) over 2 day(s) (2025-01-01 … 2025-01-02)". */
export function coverageText(report: ImpactReport): string {
  const span =
    report.from !== undefined && report.to !== undefined
      ? ` (${report.from.slice(0, 10)} … ${report.to.slice(0, 10)})`
      : '';
  return `${report.records} audit record(s) read, ${report.decisions} decision(s) in the window, from ${report.streams} stream(s) over ${report.days} day(s)${span}`;
}

export function toMarkdown(
  report: ImpactReport,
  ctx: {
    base: string;
    head: string;
    since?: string;
    guards?: readonly Guard[];
    hits: { guard: Guard; count: number }[];
    acknowledged: boolean;
    empty?: string;
  },
): string {
  const skipped = Object.entries(report.skippedWhy)
    .map(([why, n]) => `${n} ${why}`)
    .join(', ');
  const lines = [
    COMMENT_MARKER,
    `## Policy impact: \`${ctx.base}\` → \`${ctx.head}\``,
    '',
    `Replayed **${report.replayed}** recorded decision(s)${ctx.since ? ` since ${ctx.since}` : ''} on both revisions; ${report.skipped} record(s) skipped${skipped ? ` (${skipped})` : ' (unverifiable or incomplete)'}.`,
    `Covered: ${coverageText(report)}.`,
    '',
  ];
  if (ctx.empty !== undefined) lines.push(`⚠️ **Nothing was replayed**: ${ctx.empty}`, '');
  const entries = Object.entries(report.transitions).sort((a, b) => b[1] - a[1]);
  if (entries.length === 0) lines.push('No decision changes outcome.');
  else {
    lines.push('| transition | decisions | of them risk: high | top callers | top tools |', '|---|---|---|---|---|');
    for (const [t, n] of entries) {
      const top = report.top[t]!;
      lines.push(
        `| ${t.replace('->', ' → ')} | ${n} | ${report.highRisk[t] ?? 0} | ${top.callers.map(([c, k]) => `${c} (${k})`).join(', ')} | ${top.tools.map(([c, k]) => `${c} (${k})`).join(', ')} |`,
      );
    }
  }
  lines.push(
    '',
    `Mask rules change for ${report.maskChanges} decision(s); credential TTL changes for ${report.credentialTtlChanges}.`,
  );
  if (report.examples.length > 0) {
    lines.push('', '<details><summary>Examples</summary>', '');
    for (const e of report.examples) {
      lines.push(
        `- **${e.transition}** ${e.ts} \`${e.caller}\` → \`${e.upstream}\` ${e.method}${e.tool ? ` \`${e.tool}\`` : ''}`,
        `  - before: ${e.base.join('; ')}`,
        `  - after: ${e.head.join('; ')}`,
      );
    }
    lines.push('', '</details>');
  }
  if (ctx.guards !== undefined)
    lines.push(
      '',
      `Guards: ${ctx.guards.length === 0 ? 'none' : ctx.guards.map((g) => `\`${guardText(g)}\``).join(', ')}.`,
    );
  if (ctx.hits.length > 0) {
    lines.push('');
    for (const h of ctx.hits) {
      lines.push(
        `${ctx.acknowledged ? '✅ acknowledged' : '❌ **guard hit**'}: ${h.count} decision(s) ${h.guard.transition}${h.guard.highRiskOnly ? ' on risk: high calls' : ''}.${ctx.acknowledged ? '' : ' Add the `policy-impact-ack` label to accept.'}`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}
