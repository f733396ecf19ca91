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
