import type { ImpactReport } from './replay.js';

export const COMMENT_MARKER = '<!-- gitgate:policy-impact -->';

/** `deny->allow` or `deny->allow:high` (only calls where a revision says risk: high). */
export interface Guard {
  readonly transition: string;
  readonly highRiskOnly: boolean;
}

export function parseGuard(text: string): Guard {
  const m = /^(allow|deny|approval)->(allow|deny|approval)(:high)?$/.exec(text.trim());
  if (!m) throw new Error(`invalid guard "${text}": use e.g. deny->allow or deny->allow:high`);
  return { transition: `${m[1]}->${m[2]}`, highRiskOnly: m[3] !== undefined };
}

/** The guards a report hits, with how many decisions hit each. */
export function guardHits(report: ImpactReport, guards: readonly Guard[]): { guard: Guard; count: number }[] {
  return guards
    .map((guard) => ({ guard, count: (guard.highRiskOnly ? report.highRisk : report.transitions)[guard.transition] ?? 0 }))
    .filter((h) => h.count > 0);
}

export function toJson(report: ImpactReport): Record<string, unknown> {
  return {
    replayed: report.replayed,
    skipped: report.skipped,
    transitions: report.transitions,
    mask_changes: report.maskChanges,
    credential_ttl_changes: report.credentialTtlChanges,
    high_risk: report.highRisk,
    top: report.top,
    examples: report.examples,
    skipped_why: report.skippedWhy,
  };
}

export function toMarkdown(report: ImpactReport, ctx: { base: string; head: string; since?: string; hits: { guard: Guard; count: number }[]; acknowledged: boolean }): string {
  const lines = [
    COMMENT_MARKER,
    `## Policy impact: \`${ctx.base}\` → \`${ctx.head}\``,
    '',
    `Replayed **${report.replayed}** recorded decision(s)${ctx.since ? ` since ${ctx.since}` : ''} on both revisions; ${report.skipped} record(s) skipped (unverifiable or incomplete).`,
    '',
  ];
  const entries = Object.entries(report.transitions).sort((a, b) => b[1] - a[1]);
  if (entries.length === 0) lines.push('No decision changes outcome.');
  else {
    lines.push('| transition | decisions | of them risk: high | top callers | top tools |', '|---|---|---|---|---|');
    for (const [t, n] of entries) {
      const top = report.top[t]!;
      lines.push(`| ${t.replace('->', ' → ')} | ${n} | ${report.highRisk[t] ?? 0} | ${top.callers.map(([c, k]) => `${c} (${k})`).join(', ')} | ${top.tools.map(([c, k]) => `${c} (${k})`).join(', ')} |`);
    }
  }
  lines.push('', `Mask rules change for ${report.maskChanges} decision(s); credential TTL changes for ${report.credentialTtlChanges}.`);
  if (report.examples.length > 0) {
    lines.push('', '<details><summary>Examples</summary>', '');
    for (const e of report.examples) {
      lines.push(`- **${e.transition}** ${e.ts} \`${e.caller}\` → \`${e.upstream}\` ${e.method}${e.tool ? ` \`${e.tool}\`` : ''}`, `  - before: ${e.base.join('; ')}`, `  - after: ${e.head.join('; ')}`);
    }
    lines.push('', '</details>');
  }
  if (ctx.hits.length > 0) {
    lines.push('');
    for (const h of ctx.hits) {
      lines.push(`${ctx.acknowledged ? '✅ acknowledged' : '❌ **guard hit**'}: ${h.count} decision(s) ${h.guard.transition}${h.guard.highRiskOnly ? ' on risk: high calls' : ''}.${ctx.acknowledged ? '' : ' Add the `policy-impact-ack` label to accept.'}`);
    }
  }
  return `${lines.join('\n')}\n`;
}
