// Finds the messages the docs quote and checks that the code can print each (used by
// docs.test.ts). The code's messages are its string and template literals (provider/, sdk/), with
// each interpolation a slot; a quote matches when some literal can produce it.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";

/**
 * An interpolated part: a value without spaces, free text where the code wraps it in quotes or
 * parentheses, or a ledger item key (`${c.item}`), which keeps its kind: "sysctl:net.netfilter...".
 */
type Slot = { slot: "plain" | "quoted" | "paren" | "item" };
type Token = string | Slot;
export interface Corpus {
  templates: Token[][];
  /** Each template's count of literal letters. */
  letters: number[];
  byWord: Map<string, Set<number>>;
  memo: Map<string, boolean>;
}

const normal = (s: string) => s.replace(/\s+/g, " ");

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith(".ts") ? [p] : [];
  });
}

/** A string expression as literal text and slots: literals, templates, and `+` chains of them. */
function tokensOf(node: ts.Node): Token[] | undefined {
  if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) return [node.text];
  if (ts.isTemplateExpression(node)) {
    const slotOf = (e: ts.Expression): Slot => ({ slot: /(^|\.)item$/.test(e.getText()) ? "item" : "plain" });
    return [node.head.text, ...node.templateSpans.flatMap((s) => [slotOf(s.expression), s.literal.text])];
  }
  if (ts.isParenthesizedExpression(node)) return tokensOf(node.expression);
  if (ts.isBinaryExpression(node) && node.operatorToken.kind === ts.SyntaxKind.PlusToken) {
    const left = tokensOf(node.left);
    const right = tokensOf(node.right);
    if (!left && !right) return undefined;
    return [...(left ?? [{ slot: "plain" }]), ...(right ?? [{ slot: "plain" }])];
  }
  return undefined;
}

/**
 * Literal text as one character per token, whitespace collapsed; each slot typed by what wraps
 * it. A shell variable in a script's text ("$d" in `echo "... (lock $d/...)"`) is a slot too.
 */
function characters(tokens: Token[]): Token[] {
  const out: Token[] = [];
  for (const t of tokens) {
    if (typeof t !== "string") out.push({ ...t });
    else normal(t).split(/(\$[A-Za-z_]\w*|\$\{[A-Za-z_]\w*\})/).forEach((piece, n) => (n % 2 === 1 ? out.push({ slot: "plain" }) : out.push(...piece)));
  }
  out.forEach((t, i) => {
    if (typeof t === "string" || t.slot === "item") return;
    const [before, after] = [out[i - 1], out[i + 1]];
    if (before === '"' && after === '"') t.slot = "quoted";
    if (before === "(" && after === ")") t.slot = "paren";
  });
  return out;
}

const wordsOf = (text: string) => new Set(text.toLowerCase().match(/[a-z][a-z_-]{3,}/g) ?? []);

/** Every string the code under provider/ and sdk/ can print, as templates. */
export function codeMessages(root: string): Corpus {
  const templates: Token[][] = [];
  for (const file of [...sources(join(root, "provider")), ...sources(join(root, "sdk"))]) {
    const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.ES2022, true);
    const visit = (node: ts.Node) => {
      const tokens = tokensOf(node);
      if (tokens) templates.push(characters(tokens));
      // A script built with transport/shell.ts's sh`...`: its quotes are shell syntax, not text
      // it prints (`echo ${message} "(lock $d/...)"` prints the message, a space and the rest).
      if (ts.isTaggedTemplateExpression(node) && node.tag.getText() === "sh") {
        const script = tokensOf(node.template);
        if (script) templates.push(characters(script.map((t) => (typeof t === "string" ? t.replace(/["']/g, "") : t))));
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  const letters = (t: Token[]) => t.filter((x) => typeof x === "string" && /[a-z]/i.test(x)).length;
  const byWord = new Map<string, Set<number>>();
  templates.forEach((t, i) => {
    for (const w of wordsOf(t.filter((x) => typeof x === "string").join(""))) (byWord.get(w) ?? byWord.set(w, new Set()).get(w)!).add(i);
  });
  return { templates, letters: templates.map(letters), byWord, memo: new Map() };
}

/** Which ends of a text must be a template's own ends (a value's content), rather than anywhere inside it. */
interface Anchor {
  start: boolean;
  end: boolean;
  /** The text may begin inside a value (it follows an elision); else at a value's first character or a literal. Default true. */
  inside?: boolean;
}

/** A value without spaces, or a list as code joins one: "privateKey, agent", "max and hashsize". */
const isWord = (text: string) => /^[^ ]*(?:(?:,| and| or|, and) [^ ]+)*$/.test(text);

/**
 * A value: a word, a list of words, or messages of their own: one, several joined by "; " as
 * lists of them are, or one framed by a name ("web-7: usage 1.50 ...", as Fleet's lines are).
 */
function valueFits(content: string, anchor: Anchor, corpus: Corpus, depth: number): boolean {
  if (isWord(content)) return true;
  if (depth >= 3) return false;
  if (matches(content, corpus, anchor, depth + 1)) return true;
  const framed = /^[^\s:]+: (.*)$/.exec(content);
  if (framed && valueFits(framed[1], { ...anchor, start: true, inside: false }, corpus, depth + 1)) return true;
  const items = content.split("; ");
  return items.length > 1 && items.every((item, n) => {
    const itemAnchor = { start: n > 0 || anchor.start, end: n < items.length - 1 || anchor.end, inside: n > 0 ? false : anchor.inside };
    return isWord(item) || matches(item, corpus, itemAnchor, depth + 1);
  });
}

/**
 * The ends a slot may reach in `text` from `i`, where the template goes on with `next`: a value
 * without spaces, a list, or a message of its own (a detail inside a message, a step name in
 * quotes); inside parentheses, anything.
 */
function slotEnds(slot: Slot, text: string, i: number, next: Token | undefined, corpus: Corpus, depth: number, valueStart = i > 0): number[] {
  const ends: number[] = [];
  let open = 0;
  for (let k = i; k <= text.length; k++) {
    if (k > i) {
      const ch = text[k - 1];
      if (slot.slot === "quoted" && ch === '"') break;
      if (slot.slot === "paren" && ch === "(") open++;
      if (slot.slot === "paren" && ch === ")" && open-- === 0) break;
    }
    if (k < text.length && typeof next === "string" && text[k] !== next) continue;
    const content = text.slice(i, k);
    // An item key, whole (not where the text starts inside it): its kind first.
    if (slot.slot === "item" && valueStart && !/^[a-z-]+:\S/.test(content)) continue;
    if (slot.slot === "paren" || isWord(content) || valueFits(content, { start: i > 0, end: k < text.length, inside: !valueStart }, corpus, depth)) ends.push(k);
  }
  return ends;
}

/**
 * Whether `text` is a substring of what `template` can print (its start and end being the
 * template's own where `anchor` says), matching at least one literal letter of it: text wholly
 * inside values, or between them ("${a} ${b}"), says nothing.
 */
function fits(text: string, template: Token[], corpus: Corpus, anchor: Anchor, depth: number): boolean {
  const seen = new Set<string>();
  const todo: Array<[number, number, boolean]> = [];
  const push = (i: number, j: number, literal: boolean) => {
    const key = `${i}/${j}/${literal}`;
    if (!seen.has(key)) { seen.add(key); todo.push([i, j, literal]); }
  };
  for (let j = 0; j < (anchor.start ? 1 : template.length); j++) {
    push(0, j, false);
    // Starting inside a value: its tail.
    if (!anchor.start && anchor.inside !== false && typeof template[j] !== "string") for (const k of slotEnds({ slot: "plain" }, text, 0, template[j + 1], corpus, depth)) if (k < text.length) push(k, j + 1, false);
  }
  while (todo.length > 0) {
    const [i, j, literal] = todo.pop()!;
    if (i === text.length && literal && (!anchor.end || j === template.length)) return true;
    if (j >= template.length) continue;
    const t = template[j];
    if (typeof t === "string") {
      if (text[i] === t) push(i + 1, j + 1, literal || /[a-z]/i.test(t));
      // Whitespace on both sides of a value collapses into one space in the text.
      if (t === " " && text[i - 1] === " ") push(i, j + 1, literal);
      continue;
    }
    for (const k of slotEnds(t, text, i, template[j + 1], corpus, depth, i > 0 || anchor.inside === false)) {
      if (k === text.length && literal && !anchor.end) return true; // ends inside a value
      push(k, j + 1, literal);
    }
  }
  return false;
}

/**
 * Whether some template can print `text`. A quote is held to templates with 8 letters or more
 * of their own ("${a}: ${b}" would print anything); a value inside one, to any with 3.
 */
function matches(text: string, corpus: Corpus, anchor: Anchor = { start: false, end: false }, depth = 0): boolean {
  const key = `${depth > 0}|${anchor.start}|${anchor.end}|${anchor.inside}|${text}`;
  const known = corpus.memo.get(key);
  if (known !== undefined) return known;
  corpus.memo.set(key, false);
  const enough = depth === 0 ? 8 : 3;
  const likely = new Set<number>();
  for (const w of wordsOf(text)) for (const i of corpus.byWord.get(w) ?? []) likely.add(i);
  const tryAll = (order: Iterable<number>) => [...order].some((i) => corpus.letters[i] >= enough && fits(text, corpus.templates[i], corpus, anchor, depth));
  // Templates sharing a word with the text; for a quote that shares none, every one (its words may all be values).
  const found = likely.size > 0 ? tryAll(likely) : depth === 0 && tryAll(corpus.templates.keys());
  corpus.memo.set(key, found);
  return found;
}

/**
 * Messages of other programs that the docs quote (the code recognises some, never prints them):
 * the kernel's, sudo's, modprobe's, the pulumi CLI's and the SSH library's.
 */
const othersMessages = [
  "nf_conntrack: table full, dropping packet", // the kernel
  "modprobe: FATAL: Module nf_conntrack is in use.", // modprobe
  "you must have a tty to run sudo", // sudo
  "is not allowed to execute", // sudo
  "is not in the sudoers file", // sudo
  "may not run sudo", // sudo
  "sudo: a password is required", // sudo
  "error: the stack is currently locked by 1 lock(s)", // the pulumi CLI
  "Timed out while waiting for handshake", // ssh2
];

/** The HostError frame (provider/transport/errors.ts): "user@host:port[ (via bastion b)]: detail. Fix: fix". */
const hostLabel = /^[\w.-]+@[\w.:[\]-]+:\d+(?: \(via bastion [^)]+\))?: /;

/** A quote the code can't print: some part of it (between elisions, around ". Fix: ") matches no message. */
export function unprintable(quote: string, corpus: Corpus): boolean {
  let text = normal(quote).trim();
  for (const other of othersMessages) text = text.split(other).join("…");
  // Each part between elisions and around ". Fix: "; one that follows an elision may begin inside a value.
  const pieces = text.replace(hostLabel, "").split(/(…|\.\.\.|\. Fix: )/);
  return pieces.some((piece, n) => {
    const part = piece.trim();
    const inside = n > 0 && pieces[n - 1] !== ". Fix: ";
    return n % 2 === 0 && /[a-z]{3}/i.test(part) && !matches(part, corpus, { start: false, end: false, inside });
  });
}

/** Fleet.statusTable's header row: column names, each a literal of its own in sdk/fleet.ts. */
const statusTableHeader = "host wave usage count/max drop early_drop insert_failed";

/** Commands, code and config lines the docs show in backticks or quotes: not messages. */
const notMessage = /^(?:iptables|ip6tables|nft|sysctl|echo|firewall-cmd|pulumi|ssh|ssh-keygen|ssh-keyscan|modprobe|lsmod|ls|npm|systemctl|service|chkconfig|conntrack|cat|sudo|Defaults|install|options|blacklist|new |const |import |-m |-j |-A |-I |\.\.\. |table |meta |tcp |udp |ct |rule )/;

/**
 * The pulumi CLI's display of a preview or update: it opens with a resource step
 * ("+ pulumi-nodejs:dynamic/...: (create)"); its values are the plan, not messages.
 */
const pulumiDisplay = /^\s*[-+~]+ [\w.:/-]+: \((?:create|update|delete|replace|create-replacement|delete-replaced|read|refresh)\)/;

/**
 * What the docs quote as messages: fenced blocks without a language (other than the pulumi
 * CLI's display), and spans in backticks or double quotes of four words or more that aren't
 * commands, code or file names.
 */
export function quotedMessages(markdown: string): string[] {
  const quotes: string[] = [];
  // A section named in quotes ("The table is full" above) is a cross-reference.
  const headings = new Set([...markdown.matchAll(/^#+ (.+)$/gm)].map((m) => m[1].trim()));
  const prose = markdown.replace(/^ *```(\w*)\n([\s\S]*?)^ *```$/gm, (_all, language: string, body: string) => {
    if (language === "" && !pulumiDisplay.test(body)) quotes.push(body);
    return "";
  });
  const spans = [...prose.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
  const doubleQuoted = [...prose.replace(/`[^`]*`/g, "").matchAll(/"([^"\n]+(?:\n[^"\n]+)?)"/g)].map((m) => m[1]);
  for (const q of [...spans, ...doubleQuoted]) {
    const text = normal(q).trim();
    const words = text.split(" ").filter((w) => /^[a-z]{2,}[,:;.]?$/i.test(w));
    if (notMessage.test(text) || words.length < 4 || [...headings].some((h) => h.startsWith(text)) || text === statusTableHeader) continue;
    quotes.push(text);
  }
  return quotes;
}
