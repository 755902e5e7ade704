/**
 * INTERIM, until branch s3-xml lands lib/s3/xml.ts: the few pieces of its interface that
 * multipart, listing and DeleteObjects use (s3Xml, XmlWriter.open/close/leaf, parseXml,
 * readXmlBody), so those handlers are written against it now. Deleted when xml.ts is merged; the
 * imports then point at xml.ts.
 */
import { S3Error } from "./s3_error.ts";

export class XmlWriter {
  private readonly out: string[] = [];
  open(name: string): void {
    this.out.push(`<${name}>`);
  }
  close(name: string): void {
    this.out.push(`</${name}>`);
  }
  leaf(name: string, text: string): void {
    this.out.push(`<${name}>${escapeXml(text)}</${name}>`);
  }
  text(): string {
    return this.out.join("");
  }
}

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']|[^\t\n\r\x20-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/gu, (c) => `&#x${c.codePointAt(0)!.toString(16)};`);
}

/** An S3 response document: the declaration, root in S3's namespace, what fill writes. */
export function s3Xml(root: string, fill: (w: XmlWriter) => void): string {
  const w = new XmlWriter();
  fill(w);
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${root} xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${w.text()}</${root}>`;
}

export interface XmlElement {
  name: string;
  children: XmlElement[];
  text: string;
}

function malformed(why: string): S3Error {
  return new S3Error("MalformedXML", `the XML you provided was not well-formed: ${why}`);
}

function unescape(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);/g, (_, e: string) => {
    if (e.startsWith("#x")) return String.fromCodePoint(parseInt(e.slice(2), 16));
    if (e.startsWith("#")) return String.fromCodePoint(parseInt(e.slice(1), 10));
    return ({ amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" } as Record<string, string>)[e]!;
  });
}

export function parseXml(text: string): XmlElement {
  let i = 0;
  const skipMisc = (): void => {
    for (;;) {
      while (i < text.length && /\s/.test(text[i]!)) i++;
      if (text.startsWith("<?", i)) i = end("?>");
      else if (text.startsWith("<!--", i)) i = end("-->");
      else return;
    }
  };
  const end = (marker: string): number => {
    const at = text.indexOf(marker, i);
    if (at < 0) throw malformed(`no ${marker}`);
    return at + marker.length;
  };
  const element = (): XmlElement => {
    const m = /^<([A-Za-z_][\w.:-]*)((?:\s+[\w.:-]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>/.exec(text.slice(i));
    if (m === null) throw malformed(`an element expected at ${i}`);
    i += m[0].length;
    const name = m[1]!.replace(/^.*:/, "");
    const node: XmlElement = { name, children: [], text: "" };
    if (m[3] === "/") return node;
    for (;;) {
      const lt = text.indexOf("<", i);
      if (lt < 0) throw malformed(`${name} is not closed`);
      node.text += unescape(text.slice(i, lt));
      i = lt;
      if (text.startsWith("<!--", i)) i = end("-->");
      else if (text.startsWith("</", i)) {
        const close = /^<\/([A-Za-z_][\w.:-]*)\s*>/.exec(text.slice(i));
        if (close === null || close[1] !== m[1]) throw malformed(`${name} closed by something else`);
        i += close[0].length;
        return node;
      } else node.children.push(element());
    }
  };
  skipMisc();
  const root = element();
  skipMisc();
  if (i !== text.length) throw malformed("text after the root element");
  return root;
}

/** The body, at most max_bytes (else MalformedXML naming the limit), parsed. */
export async function readXmlBody(body: AsyncIterable<Uint8Array>, max_bytes: number): Promise<XmlElement> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > max_bytes) throw malformed(`the body is over ${max_bytes} bytes`);
    chunks.push(chunk);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw malformed("the body is not UTF-8");
  }
  return parseXml(text);
}
