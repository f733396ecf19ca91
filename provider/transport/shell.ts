/**
 * The one place where values become shell text. Every command sent to a host is built from argv
 * arrays of validated values and quoted here; appliers never concatenate shell strings by hand.
 */

/** Quotes one word for a POSIX shell. */
export function quote(word: string | number): string {
  const text = String(word);
  if (text.includes("\0")) throw new Error("a NUL byte can't be passed to a shell");
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(text)) return text;
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** One command line from an argv array. */
export function command(...argv: Array<string | number>): string {
  if (argv.length === 0) throw new Error("empty command");
  return argv.map(quote).join(" ");
}

/** Shell text made by `sh` (already shell): interpolated into another `sh` as it is. */
export class ShellText {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

/**
 * Shell text from a template in which every interpolated value is quoted, so no value can become
 * shell syntax whatever it holds; only fragments that `sh` itself made (ShellText) go in as shell.
 * The template's literal parts are the shell: `sh\`mv ${dir}/armed ${dir}/fired\``.
 */
export function sh(literals: TemplateStringsArray, ...values: Array<string | number | ShellText>): ShellText {
  // A literal with an invalid escape (`\(`) has no cooked text: write the backslash twice.
  if (literals.some((l) => l === undefined)) throw new Error(`sh template with an invalid escape: ${literals.raw.join("${…}")}`);
  let text = literals[0];
  values.forEach((value, i) => (text += (value instanceof ShellText ? value.text : quote(value)) + literals[i + 1]));
  return new ShellText(text);
}
