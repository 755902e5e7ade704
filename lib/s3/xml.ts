/**
 * XML for the S3 gateway (docs/S3.md §1): an escaping writer for responses and a small strict
 * parser for request bodies (DeleteObjects, CompleteMultipartUpload, CreateBucket).
 *
 * What XML 1.0 can carry: the characters tab, LF, CR, U+0020-U+D7FF, U+E000-U+FFFD and
 * U+10000-U+10FFFF. Every other character (C0 controls other than tab/LF/CR, U+FFFE, U+FFFF, lone
 * surrogates) is refused by XML 1.0 even as a character reference: `&#x1;` is a well-formedness
 * error in 1.0 (only XML 1.1 allows it), and strict parsers (expat, which boto3 and the AWS CLI
 * use) reject the whole document. S3 keys may hold such characters, so the writer refuses them
 * instead of producing a document a client cannot read: callers that write keys check xmlSafe()
 * and use encoding-type=url (which every AWS SDK sends on listings) or refuse the request.
 *
 * A literal CR in text would reach the reader as LF (XML end-of-line normalization), so the writer
 * sends CR as `&#xD;`, which XML 1.0 allows and which survives: a key with a CR round-trips.
 *
 * The parser takes no DTD: a DOCTYPE or ENTITY declaration is refused, so there is no external
 * entity (XXE) and no entity expansion (billion laughs); only the five predefined entities and
 * numeric character references are known.
 */
import { assert } from "../util/assert.ts";
import { S3Error } from "./s3_error.ts";

export const s3_xml_namespace = "http://s3.amazonaws.com/doc/2006-03-01/";
const xml_declaration = '<?xml version="1.0" encoding="UTF-8"?>';

/** Deepest element nesting a request body may have; S3's request documents are 3 deep. */
export const xml_depth_max = 16;
/** Most elements in one request body: a CompleteMultipartUpload of 10,000 parts, each a Part with
 * PartNumber, ETag and one checksum element, plus the root (4 × 10,000 + 1). */
export const xml_elements_max = 40_001;
/** Longest element or attribute name, in UTF-16 code units. */
export const xml_name_length_max = 256;

/** One character XML 1.0 cannot carry (see the module comment). */
const xml_illegal = /[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;
const xml_illegal_global = /[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;

/** True when XML 1.0 can carry every character of text (see the module comment). */
export function xmlSafe(text: string): boolean {
  return !xml_illegal.test(text);
}

function isXmlChar(code_point: number): boolean {
  return (
    code_point === 0x9 ||
    code_point === 0xa ||
    code_point === 0xd ||
    (code_point >= 0x20 && code_point <= 0xd7ff) ||
    (code_point >= 0xe000 && code_point <= 0xfffd) ||
    (code_point >= 0x10000 && code_point <= 0x10ffff)
  );
}

function describeCodePoint(text: string): string {
  const code_point = text.codePointAt(0)!;
  return `U+${code_point.toString(16).toUpperCase().padStart(4, "0")}`;
}

const escapes: ReadonlyMap<string, string> = new Map([
  ["&", "&amp;"],
  ["<", "&lt;"],
  [">", "&gt;"],
  ['"', "&quot;"],
  ["'", "&apos;"],
  ["\r", "&#xD;"],
]);

function escapeText(text: string): string {
  return text.replace(/[&<>"'\r]/g, (c) => escapes.get(c)!);
}

const name_start =
  ":A-Z_a-z\\u00C0-\\u00D6\\u00D8-\\u00F6\\u00F8-\\u02FF\\u0370-\\u037D\\u037F-\\u1FFF\\u200C-\\u200D\\u2070-\\u218F\\u2C00-\\u2FEF\\u3001-\\uD7FF\\uF900-\\uFDCF\\uFDF0-\\uFFFD\\u{10000}-\\u{EFFFF}";
const name_rest = `${name_start}\\-.0-9\\u00B7\\u0300-\\u036F\\u203F-\\u2040`;
/** XML 1.0's Name production (§2.3). */
const xml_name = new RegExp(`[${name_start}][${name_rest}]*`, "uy");
const whole_xml_name = new RegExp(`^[${name_start}][${name_rest}]*$`, "u");

function checkWriterName(name: string): void {
  assert(whole_xml_name.test(name) && name.length <= xml_name_length_max, () => `not an XML element name: ${JSON.stringify(name)}`);
}

/**
 * Builds an XML fragment element by element, escaping every value. A value XML 1.0 cannot carry
 * is an S3Error (InvalidArgument) naming the element and the character, never a broken document.
 */
export class XmlWriter {
  private readonly parts: string[] = [];
  private readonly open_names: string[] = [];

  open(name: string): this {
    checkWriterName(name);
    this.parts.push(`<${name}>`);
    this.open_names.push(name);
    return this;
  }

  close(): this {
    const name = this.open_names.pop();
    assert(name !== undefined, "XmlWriter.close without an open element");
    this.parts.push(`</${name}>`);
    return this;
  }

  leaf(name: string, value: string | number | boolean | bigint): this {
    checkWriterName(name);
    assert(typeof value !== "number" || Number.isFinite(value), () => `<${name}> given the number ${value}`);
    const text = String(value);
    const bad = xml_illegal.exec(text);
    if (bad !== null)
      throw new S3Error(
        "InvalidArgument",
        `<${name}> would hold ${describeCodePoint(bad[0])}, which XML 1.0 cannot carry; ask for encoding-type=url`,
      );
    this.parts.push(`<${name}>${escapeText(text)}</${name}>`);
    return this;
  }

  toString(): string {
    assert(this.open_names.length === 0, () => `XmlWriter has unclosed elements: ${this.open_names.join(" > ")}`);
    return this.parts.join("");
  }
}

/** A whole S3 response document: the declaration, then <root xmlns="S3's namespace"> with what
 * fill writes inside it. */
export function s3Xml(root: string, fill: (w: XmlWriter) => void): string {
  checkWriterName(root);
  const w = new XmlWriter();
  fill(w);
  return `${xml_declaration}<${root} xmlns="${s3_xml_namespace}">${w.toString()}</${root}>`;
}

/** The text with every character XML 1.0 cannot carry replaced by the percent-escapes of its
 * UTF-8 (U+FFFD for a lone surrogate), so an error document is always well-formed and still
 * shows what the bad character was. */
function carryable(text: string): string {
  return text.replace(xml_illegal_global, (c) => (c.length === 1 && c >= "\uD800" && c <= "\uDFFF" ? "\uFFFD" : encodeURIComponent(c)));
}

/** S3's error document: Code, Message, Resource, RequestId, then err.fields (no namespace, as S3).
 * Never throws on the text it is given: characters XML cannot carry are percent-escaped. */
export function errorXml(err: S3Error, resource: string, request_id: string): string {
  const w = new XmlWriter();
  w.open("Error");
  w.leaf("Code", err.code);
  w.leaf("Message", carryable(err.message));
  w.leaf("Resource", carryable(resource));
  w.leaf("RequestId", carryable(request_id));
  for (const [name, value] of err.fields) w.leaf(name, carryable(value));
  w.close();
  return xml_declaration + w.toString();
}

export interface XmlElement {
  /** local name, namespace prefix removed */
  name: string;
  children: XmlElement[];
  /** The element's direct text (text and CDATA between its children), concatenated, untrimmed. */
  text: string;
}

const predefined_entities: ReadonlyMap<string, string> = new Map([
  ["amp", "&"],
  ["lt", "<"],
  ["gt", ">"],
  ["quot", '"'],
  ["apos", "'"],
]);

const reference = /&(?:([A-Za-z]+)|#([0-9]+)|#x([0-9A-Fa-f]+));/y;
const whitespace = /[ \t\n]*/y;
const markup = /[<&]/g;
const xml_declaration_pattern =
  /<\?xml[ \t\n]+version[ \t\n]*=[ \t\n]*(?:"([^"]*)"|'([^']*)')(?:[ \t\n]+encoding[ \t\n]*=[ \t\n]*(?:"([^"]*)"|'([^']*)'))?(?:[ \t\n]+standalone[ \t\n]*=[ \t\n]*(?:"(?:yes|no)"|'(?:yes|no)'))?[ \t\n]*\?>/y;

interface OpenElement {
  raw_name: string;
  element: XmlElement;
  at: number;
}

/** One parse: a cursor over the text (line ends already normalized to LF). */
class Parser {
  private i = 0;
  private elements = 0;

  constructor(private readonly s: string) {}

  private where(at: number): string {
    let line = 1;
    let line_start = 0;
    for (let k = this.s.indexOf("\n"); k !== -1 && k < at; k = this.s.indexOf("\n", k + 1)) {
      line += 1;
      line_start = k + 1;
    }
    return `line ${line}, column ${at - line_start + 1}`;
  }

  private fail(what: string, at: number = this.i): never {
    throw new S3Error("MalformedXML", `malformed XML: ${what} at ${this.where(at)}`);
  }

  /** Where the next '<' or '&' is, from this.i (the text's length if none). */
  private nextMarkup(): number {
    markup.lastIndex = this.i;
    return markup.exec(this.s)?.index ?? this.s.length;
  }

  private startsWith(token: string): boolean {
    return this.s.startsWith(token, this.i);
  }

  private skipWhitespace(): boolean {
    whitespace.lastIndex = this.i;
    whitespace.exec(this.s);
    const moved = whitespace.lastIndex > this.i;
    this.i = whitespace.lastIndex;
    return moved;
  }

  private name(what: string): string {
    xml_name.lastIndex = this.i;
    const m = xml_name.exec(this.s);
    if (m === null) this.fail(`expected ${what}`);
    if (m[0].length > xml_name_length_max) this.fail(`${what} of ${m[0].length} characters (the limit is ${xml_name_length_max})`);
    this.i += m[0].length;
    return m[0];
  }

  /** Literal character data from..to: every character must be one XML 1.0 allows. */
  private checkChars(from: number, to: number): string {
    const text = this.s.slice(from, to);
    const bad = xml_illegal.exec(text);
    if (bad !== null) this.fail(`character ${describeCodePoint(bad[0])}, which XML 1.0 does not allow,`, from + bad.index);
    return text;
  }

  /** The reference at this.i (which is '&'), decoded. */
  private reference(): string {
    reference.lastIndex = this.i;
    const m = reference.exec(this.s);
    if (m === null) {
      const near = /&([A-Za-z_:][^;\s<&]{0,40});/y;
      near.lastIndex = this.i;
      const named = near.exec(this.s);
      if (named !== null) this.fail(`undefined entity &${named[1]}; (only &amp; &lt; &gt; &quot; &apos; are known)`);
      this.fail("a bare '&' (write &amp;)");
    }
    let value: string;
    if (m[1] !== undefined) {
      const known = predefined_entities.get(m[1]);
      if (known === undefined) this.fail(`undefined entity &${m[1]}; (only &amp; &lt; &gt; &quot; &apos; are known)`);
      value = known;
    } else {
      const digits = m[2] ?? m[3]!;
      const code_point = digits.length > 8 ? Infinity : Number.parseInt(digits, m[2] !== undefined ? 10 : 16);
      if (!isXmlChar(code_point)) this.fail(`character reference ${m[0]} names a character XML 1.0 does not allow`);
      value = String.fromCodePoint(code_point);
    }
    this.i = reference.lastIndex;
    return value;
  }

  /** `<!--` at this.i. */
  private comment(): void {
    const end = this.s.indexOf("--", this.i + 4);
    if (end === -1) this.fail("unclosed comment");
    if (this.s[end + 2] !== ">") this.fail("'--' inside a comment", end);
    this.checkChars(this.i + 4, end);
    this.i = end + 3;
  }

  /** `<?` at this.i: a processing instruction, skipped. */
  private processingInstruction(): void {
    const at = this.i;
    this.i += 2;
    const target = this.name("a processing instruction target");
    if (target.toLowerCase() === "xml") this.fail("an XML declaration is allowed only at the very start", at);
    const end = this.s.indexOf("?>", this.i);
    if (end === -1) this.fail("unclosed processing instruction", at);
    this.checkChars(this.i, end);
    this.i = end + 2;
  }

  /** `<!` at this.i that is neither a comment nor CDATA. */
  private declaration(): never {
    if (this.startsWith("<!DOCTYPE")) this.fail("a DOCTYPE declaration (refused: no DTDs, no entity definitions)");
    if (this.startsWith("<!ENTITY")) this.fail("an ENTITY declaration (refused: no entity definitions)");
    this.fail("a markup declaration (refused: no DTDs)");
  }

  /** Comments, processing instructions and whitespace before or after the root element. */
  private misc(after_root: boolean): void {
    for (;;) {
      this.skipWhitespace();
      if (this.i >= this.s.length) return;
      if (this.startsWith("<!--")) this.comment();
      else if (this.startsWith("<?")) this.processingInstruction();
      else if (this.startsWith("<!")) this.declaration();
      else if (this.startsWith("<")) {
        if (after_root) this.fail("a second root element");
        return;
      } else this.fail("text outside the root element");
    }
  }

  /** The attributes and end of a start tag; true when the tag was empty (`/>`). */
  private attributes(): boolean {
    const seen = new Set<string>();
    for (;;) {
      const spaced = this.skipWhitespace();
      if (this.startsWith("/>")) {
        this.i += 2;
        return true;
      }
      if (this.startsWith(">")) {
        this.i += 1;
        return false;
      }
      if (this.i >= this.s.length) this.fail("document ends inside a start tag");
      if (!spaced) this.fail("expected whitespace, '>' or '/>' in a start tag");
      const at = this.i;
      const name = this.name("an attribute name");
      if (seen.has(name)) this.fail(`attribute ${name} given twice`, at);
      seen.add(name);
      this.skipWhitespace();
      if (!this.startsWith("=")) this.fail(`expected '=' after attribute ${name}`);
      this.i += 1;
      this.skipWhitespace();
      const quote = this.s[this.i];
      if (quote !== '"' && quote !== "'") this.fail(`expected a quoted value for attribute ${name}`);
      const end = this.s.indexOf(quote, this.i + 1);
      if (end === -1) this.fail(`unclosed value of attribute ${name}`);
      this.i += 1;
      while (this.i < end) {
        const stop = Math.min(this.nextMarkup(), end);
        this.checkChars(this.i, stop);
        this.i = stop;
        if (this.i === end) break;
        if (this.s[this.i] === "<") this.fail(`'<' in the value of attribute ${name}`);
        this.reference();
        if (this.i > end) this.fail(`unclosed value of attribute ${name}`);
      }
      this.i = end + 1;
    }
  }

  /** A start tag at this.i (which is '<'): the new element, and whether it is already closed. */
  private startTag(depth: number): { raw_name: string; element: XmlElement; empty: boolean } {
    const at = this.i;
    this.i += 1;
    const raw_name = this.name("an element name");
    const colon = raw_name.indexOf(":");
    const name = raw_name.slice(colon + 1);
    if (colon === 0 || name.length === 0 || name.includes(":")) this.fail(`element name ${raw_name} is not a qualified name`, at + 1);
    this.elements += 1;
    if (this.elements > xml_elements_max) this.fail(`more than ${xml_elements_max} elements`, at);
    if (depth > xml_depth_max) this.fail(`elements nested deeper than ${xml_depth_max}`, at);
    const empty = this.attributes();
    return { raw_name, element: { name, children: [], text: "" }, empty };
  }

  parse(): XmlElement {
    if (this.startsWith("\uFEFF")) this.i += 1;
    if (/^<\?xml[ \t\n?]/.test(this.s.slice(this.i, this.i + 6))) this.xmlDeclaration();
    this.misc(false);
    if (this.i >= this.s.length) this.fail(this.s.trim().length === 0 ? "an empty document" : "no root element");
    const first = this.startTag(1);
    const root = first.element;
    const stack: OpenElement[] = first.empty ? [] : [{ raw_name: first.raw_name, element: root, at: 0 }];
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const next = this.nextMarkup();
      if (next === this.s.length) this.fail(`document ends inside <${top.raw_name}> opened at ${this.where(top.at)}`, next);
      if (next > this.i) {
        const text = this.checkChars(this.i, next);
        const cdata_end = text.indexOf("]]>");
        if (cdata_end !== -1) this.fail("']]>' in text", this.i + cdata_end);
        top.element.text += text;
        this.i = next;
      }
      if (this.s[this.i] === "&") {
        top.element.text += this.reference();
      } else if (this.startsWith("</")) {
        const at = this.i;
        this.i += 2;
        const raw_name = this.name("an element name");
        this.skipWhitespace();
        if (!this.startsWith(">")) this.fail(`expected '>' to end </${raw_name}>`);
        this.i += 1;
        if (raw_name !== top.raw_name) this.fail(`</${raw_name}> closes <${top.raw_name}> opened at ${this.where(top.at)}`, at);
        stack.pop();
      } else if (this.startsWith("<!--")) {
        this.comment();
      } else if (this.startsWith("<![CDATA[")) {
        const end = this.s.indexOf("]]>", this.i + 9);
        if (end === -1) this.fail("unclosed CDATA section");
        top.element.text += this.checkChars(this.i + 9, end);
        this.i = end + 3;
      } else if (this.startsWith("<!")) {
        this.declaration();
      } else if (this.startsWith("<?")) {
        this.processingInstruction();
      } else {
        const at = this.i;
        const child = this.startTag(stack.length + 1);
        top.element.children.push(child.element);
        if (!child.empty) stack.push({ raw_name: child.raw_name, element: child.element, at });
      }
    }
    this.misc(true);
    return root;
  }

  private xmlDeclaration(): void {
    xml_declaration_pattern.lastIndex = this.i;
    const m = xml_declaration_pattern.exec(this.s);
    if (m === null) this.fail("a malformed XML declaration");
    const version = m[1] ?? m[2]!;
    if (!/^1\.[0-9]+$/.test(version)) this.fail(`XML version ${JSON.stringify(version)} (only 1.x is read)`);
    const encoding = m[3] ?? m[4];
    if (encoding !== undefined && !/^utf-?8$/i.test(encoding)) this.fail(`encoding ${JSON.stringify(encoding)} (only UTF-8 is read)`);
    this.i = xml_declaration_pattern.lastIndex;
  }
}

/** Strict small parser for request bodies; throws S3Error MalformedXML saying what and where. */
export function parseXml(text: string): XmlElement {
  // XML end-of-line handling (§2.11): CRLF and a lone CR are read as LF before parsing. Line
  // numbers in errors do not change; a CR wanted in the value is written as &#xD;.
  return new Parser(text.replace(/\r\n?/g, "\n")).parse();
}

const strict_utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/**
 * Reads at most max_bytes of body and parses it. A body over max_bytes is EntityTooLarge naming the
 * limit (it is refused for its size, not its content), read no further; an empty body or one that is
 * not UTF-8 is MalformedXML. S3Errors the body itself throws (digest checks) pass through.
 */
export async function readXmlBody(body: AsyncIterable<Uint8Array>, max_bytes: number): Promise<XmlElement> {
  assert(Number.isSafeInteger(max_bytes) && max_bytes > 0, () => `readXmlBody max_bytes ${max_bytes}`);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > max_bytes)
      throw new S3Error("EntityTooLarge", `the XML request body is larger than the limit of ${max_bytes} bytes for this request`);
    // Copied: the body may reuse its buffers for the next chunk.
    chunks.push(chunk.slice());
  }
  if (size === 0) throw new S3Error("MalformedXML", "malformed XML: the request body is empty, an XML document was expected");
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  let text: string;
  try {
    text = strict_utf8.decode(bytes);
  } catch {
    throw new S3Error("MalformedXML", "malformed XML: the request body is not valid UTF-8");
  }
  // The decoder has already removed a leading UTF-8 byte order mark.
  return parseXml(text);
}
