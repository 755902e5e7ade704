import { describe, expect, test } from "bun:test";
import { AssertionError } from "../util/assert.ts";
import { Prng } from "../util/prng.ts";
import { S3Error, type S3ErrorCode } from "./s3_error.ts";
import {
  errorXml,
  parseXml,
  readXmlBody,
  s3Xml,
  xml_depth_max,
  xml_elements_max,
  xml_name_length_max,
  xmlSafe,
  XmlWriter,
  type XmlElement,
} from "./xml.ts";

function caught(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error("expected a throw");
}

/** f throws an S3Error with this code whose message matches. */
function s3Throws(f: () => unknown, code: S3ErrorCode, message: RegExp): S3Error {
  const e = caught(f);
  expect(e).toBeInstanceOf(S3Error);
  const err = e as S3Error;
  expect(err.code).toBe(code);
  expect(err.message).toMatch(message);
  return err;
}

function malformed(text: string, message: RegExp): S3Error {
  return s3Throws(() => parseXml(text), "MalformedXML", message);
}

function child(e: XmlElement, name: string): XmlElement {
  const c = e.children.find((x) => x.name === name);
  if (c === undefined) throw new Error(`no <${name}> in <${e.name}>`);
  return c;
}

describe("XmlWriter and s3Xml", () => {
  test("a response document: declaration, S3 namespace, escaped values", () => {
    const xml = s3Xml("ListBucketResult", (w) => {
      w.leaf("Name", "b");
      w.leaf("KeyCount", 2)
        .leaf("IsTruncated", false)
        .leaf("Size", 5n * 1024n ** 4n);
      w.open("Contents").leaf("Key", `a&b<c>"d"'e'`).close();
    });
    expect(xml).toBe(
      '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
        "<Name>b</Name><KeyCount>2</KeyCount><IsTruncated>false</IsTruncated><Size>5497558138880</Size>" +
        "<Contents><Key>a&amp;b&lt;c&gt;&quot;d&quot;&apos;e&apos;</Key></Contents></ListBucketResult>",
    );
  });

  test("every key XML 1.0 can carry round-trips through the parser, CR included", () => {
    const keys = ["plain", `&<>"'`, "tab\there", "line\nfeed", "carriage\rreturn", "crlf\r\nend", "é中😀", "]]>", "  spaced  ", ""];
    for (const key of keys) {
      const xml = s3Xml("Delete", (w) => w.open("Object").leaf("Key", key).close());
      const root = parseXml(xml);
      expect(root.name).toBe("Delete");
      expect(child(child(root, "Object"), "Key").text).toBe(key);
    }
  });

  test("a character XML 1.0 cannot carry is refused, naming the element and the character", () => {
    for (const [text, shown] of [
      ["a\u0001b", "U+0001"],
      ["\u0000", "U+0000"],
      ["x\u001f", "U+001F"],
      ["\uFFFE", "U+FFFE"],
      ["\uFFFF", "U+FFFF"],
      ["\uD800", "U+D800"],
    ]) {
      expect(xmlSafe(text!)).toBe(false);
      s3Throws(
        () => new XmlWriter().leaf("Key", text!),
        "InvalidArgument",
        new RegExp(`<Key> would hold ${shown!.replace("+", "\\+")}.*encoding-type=url`),
      );
    }
    for (const text of ["", "\t\n\r", " ~\u007f\u0085", "\uD7FF\uE000\uFFFD", "😀\u{10FFFF}"]) expect(xmlSafe(text)).toBe(true);
  });

  test("unbalanced use and bad names are programming errors", () => {
    expect(caught(() => new XmlWriter().close())).toBeInstanceOf(AssertionError);
    expect(caught(() => new XmlWriter().open("A").toString())).toBeInstanceOf(AssertionError);
    expect(caught(() => s3Xml("R", (w) => w.open("A")))).toBeInstanceOf(AssertionError);
    expect(caught(() => new XmlWriter().leaf("a b", 1))).toBeInstanceOf(AssertionError);
    expect(caught(() => new XmlWriter().leaf("1a", 1))).toBeInstanceOf(AssertionError);
    expect(caught(() => new XmlWriter().leaf("N", Number.NaN))).toBeInstanceOf(AssertionError);
  });
});

describe("errorXml", () => {
  test("Code, Message, Resource, RequestId, then the error's fields", () => {
    const err = new S3Error("NoSuchKey", "no key <k> here", new Map([["Key", "k&"]]));
    expect(errorXml(err, "/b/k", "req-1")).toBe(
      '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>no key &lt;k&gt; here</Message>' +
        "<Resource>/b/k</Resource><RequestId>req-1</RequestId><Key>k&amp;</Key></Error>",
    );
  });

  test("text XML cannot carry is percent-escaped, so the error document is always readable", () => {
    const err = new S3Error("InvalidArgument", "key a\u0001b", new Map([["Key", "\u0000\uFFFF"]]));
    const root = parseXml(errorXml(err, "/b/a\u0001b", "r"));
    expect(child(root, "Message").text).toBe("key a%01b");
    expect(child(root, "Resource").text).toBe("/b/a%01b");
    expect(child(root, "Key").text).toBe("%00%EF%BF%BF");
  });
});

describe("parseXml reads", () => {
  test("a CompleteMultipartUpload as the AWS SDK sends it", () => {
    const root = parseXml(
      '<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
        '<Part><ETag>"abc"</ETag><PartNumber>1</PartNumber></Part>\n  <Part><ETag>&quot;def&quot;</ETag><PartNumber>2</PartNumber></Part>' +
        "</CompleteMultipartUpload>",
    );
    expect(root.name).toBe("CompleteMultipartUpload");
    expect(root.children.map((p) => [child(p, "PartNumber").text, child(p, "ETag").text])).toEqual([
      ["1", '"abc"'],
      ["2", '"def"'],
    ]);
    expect(root.text.trim()).toBe("");
  });

  test("entities, character references, CDATA, comments, processing instructions, mixed content", () => {
    const root = parseXml(
      "\uFEFF<?xml version='1.0'?><!-- c --><?pi data?><R>a&amp;&lt;&gt;&quot;&apos;&#65;&#x42;&#x1F600;<!-- x --><![CDATA[<&]]>]]<C/>z</R><!-- after -->\n",
    );
    expect(root.text).toBe(`a&<>"'AB😀<&]]z`);
    expect(root.children).toEqual([{ name: "C", children: [], text: "" }]);
  });

  test("attributes are parsed (quotes, '>' inside, references) and ignored; prefixes are removed", () => {
    const root = parseXml(`<s3:R xmlns:s3="urn:x" a = "x>'y" b='"&amp;&#60;' ><s3:K c="1"/><K>v</K></s3:R>`);
    expect(root.name).toBe("R");
    expect(root.children.map((c) => [c.name, c.text])).toEqual([
      ["K", ""],
      ["K", "v"],
    ]);
  });

  test("CRLF and CR in the document are read as LF; &#xD; is a CR", () => {
    expect(parseXml("<K>a\r\nb\rc&#xD;&#13;</K>").text).toBe("a\nb\nc\r\r");
  });

  test("the limits themselves are allowed: depth, name length, element count", () => {
    let deep = "";
    for (let i = 0; i < xml_depth_max; i++) deep += "<D>";
    for (let i = 0; i < xml_depth_max; i++) deep += "</D>";
    expect(parseXml(deep).name).toBe("D");
    const long = "N".repeat(xml_name_length_max);
    expect(parseXml(`<${long}/>`).name).toBe(long);
    // The biggest legal CompleteMultipartUpload: 10,000 parts with a number, an ETag and a checksum.
    const part =
      '<Part><PartNumber>1</PartNumber><ETag>"0123456789abcdef0123456789abcdef"</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part>';
    const complete = `<CompleteMultipartUpload>${part.repeat(10_000)}</CompleteMultipartUpload>`;
    expect(parseXml(complete).children.length).toBe(10_000);
    expect(1 + 10_000 * 4).toBe(xml_elements_max);
  });
});

describe("parseXml refuses", () => {
  test("XXE: a DOCTYPE with an external entity", () => {
    malformed(
      '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
      /DOCTYPE declaration \(refused: no DTDs.*line 1, column 22/,
    );
  });

  test("billion laughs", () => {
    let doc = '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n';
    for (let i = 1; i < 10; i++) doc += ` <!ENTITY lol${i} "${`&lol${i === 1 ? "" : i - 1};`.repeat(10)}">\n`;
    doc += "]>\n<lolz>&lol9;</lolz>";
    malformed(doc, /DOCTYPE.*line 2, column 1/);
  });

  test("entities without a DOCTYPE, and ENTITY declarations anywhere", () => {
    malformed("<x>&e;</x>", /undefined entity &e;.*line 1, column 4/);
    malformed("<x>&ext.file;</x>", /undefined entity &ext\.file;/);
    malformed("<x>a & b</x>", /a bare '&'/);
    malformed("<x>&#x1;</x>", /character reference &#x1; names a character XML 1\.0 does not allow/);
    malformed("<x>&#0;</x>", /&#0;/);
    malformed("<x>&#x110000;</x>", /&#x110000;/);
    malformed("<x>&#99999999999999999999;</x>", /does not allow/);
    malformed('<x><!ENTITY e "x"></x>', /ENTITY declaration/);
    malformed('<!ENTITY e "x"><x/>', /ENTITY declaration/);
    malformed("<x><!ELEMENT x ANY></x>", /markup declaration/);
  });

  test("mismatched and unclosed tags, naming both and where the open tag was", () => {
    malformed("<a>\n  <b></a>", /<\/a> closes <b> opened at line 2, column 3 at line 2, column 6/);
    malformed("<a><b></b>", /document ends inside <a> opened at line 1, column 1/);
    malformed("<a></b>", /<\/b> closes <a> opened at line 1, column 1 at line 1, column 4/);
    malformed("<a><b>", /document ends inside <b> opened at line 1, column 4/);
    expect(parseXml("<a><b></b ></a\n>").children.length).toBe(1);
  });

  test("text outside the root, a second root, no root", () => {
    malformed("hello<a/>", /text outside the root element at line 1, column 1/);
    malformed("<a/>tail", /text outside the root element at line 1, column 5/);
    malformed("<a/><b/>", /a second root element at line 1, column 5/);
    malformed("", /an empty document/);
    malformed("  \n ", /an empty document/);
    malformed("<!-- only -->", /no root element/);
  });

  test("nesting deeper than the limit", () => {
    let deep = "";
    for (let i = 0; i <= xml_depth_max; i++) deep += "<D>";
    malformed(deep, new RegExp(`nested deeper than ${xml_depth_max} at line 1, column ${3 * xml_depth_max + 1}`));
  });

  test("more elements than the limit (one over, and 50,000)", () => {
    malformed(`<R>${"<E/>".repeat(xml_elements_max)}</R>`, new RegExp(`more than ${xml_elements_max} elements`));
    malformed(`<R>${"<E/>".repeat(50_000)}</R>`, /more than 40001 elements at line 1, column 160004/);
  });

  test("names longer than the limit", () => {
    malformed(`<${"N".repeat(xml_name_length_max + 1)}/>`, /element name of 257 characters \(the limit is 256\)/);
    malformed(`<a ${"n".repeat(xml_name_length_max + 1)}="1"/>`, /attribute name of 257 characters/);
  });

  test("every truncation of a valid document", () => {
    const doc = `<?xml version="1.0" encoding="UTF-8"?><Delete><Object><Key>a&amp;b<![CDATA[c]]></Key></Object><Quiet>true</Quiet></Delete>`;
    expect(child(parseXml(doc), "Quiet").text).toBe("true");
    for (let n = 0; n < doc.length; n++) {
      const e = caught(() => parseXml(doc.slice(0, n)));
      expect(e).toBeInstanceOf(S3Error);
      expect((e as S3Error).code).toBe("MalformedXML");
    }
  });

  test("characters and syntax XML 1.0 does not allow", () => {
    malformed("<x>a\u0001b</x>", /character U\+0001, which XML 1\.0 does not allow, at line 1, column 5/);
    malformed("<x>\uFFFF</x>", /U\+FFFF/);
    malformed("<x>a]]>b</x>", /']]>' in text/);
    malformed("<x><!-- a -- b --></x>", /'--' inside a comment/);
    malformed("<x><![CDATA[abc</x>", /unclosed CDATA/);
    malformed("<x><!-- abc</x>", /unclosed comment/);
    malformed('<x a="1" a="2"/>', /attribute a given twice/);
    malformed('<x a="<"/>', /'<' in the value of attribute a/);
    malformed('<x a="1"b="2"/>', /expected whitespace/);
    malformed("<x a=1/>", /expected a quoted value/);
    malformed("<x a/>", /expected '=' after attribute a/);
    malformed("<:x/>", /not a qualified name/);
    malformed("<a:b:c/>", /not a qualified name/);
    malformed("< x/>", /expected an element name/);
    malformed("<x></x y>", /expected '>' to end <\/x>/);
  });

  test("XML declarations other than UTF-8 1.x, or not at the start", () => {
    malformed('<?xml version="1.0" encoding="UTF-16"?><x/>', /encoding "UTF-16" \(only UTF-8/);
    malformed('<?xml version="2.0"?><x/>', /XML version "2\.0"/);
    malformed("<?xml encoding='UTF-8'?><x/>", /malformed XML declaration/);
    malformed(' <?xml version="1.0"?><x/>', /XML declaration is allowed only at the very start/);
    malformed('<x><?xml version="1.0"?></x>', /XML declaration is allowed only at the very start/);
    expect(parseXml('<?xml version="1.1" encoding="utf8" standalone="yes" ?><x/>').name).toBe("x");
  });
});

describe("parseXml on damaged documents", () => {
  test("a mutated document parses or is MalformedXML, never another error", () => {
    const doc =
      '<?xml version="1.0"?><!-- c --><s:Delete xmlns:s="x" a=\'1\'><Object><Key>a&amp;&#x42;<![CDATA[<c>]]></Key></Object><?p q?><Quiet>true</Quiet></s:Delete>';
    const alphabet = ["<", ">", "/", "&", ";", "#", "x", "!", "-", "[", "]", "?", '"', "'", "=", " ", "\n", "\r", ":", "a", "\u0001", "é"];
    const prng = new Prng(15);
    let parsed = 0;
    for (let round = 0; round < 20_000; round++) {
      let text = doc;
      for (let edits = prng.range(1, 4); edits > 0; edits--) {
        const at = prng.int(text.length + 1);
        const c = alphabet[prng.int(alphabet.length)]!;
        const kind = prng.int(3);
        text = text.slice(0, at) + (kind === 2 ? "" : c) + text.slice(kind === 0 ? at : at + 1);
      }
      try {
        parseXml(text);
        parsed += 1;
      } catch (e) {
        if (!(e instanceof S3Error) || e.code !== "MalformedXML" || !/ at line \d+, column \d+$/.test(e.message)) throw e;
      }
    }
    // Some mutations keep the document well-formed (in text, in a comment), most do not.
    expect(parsed).toBeGreaterThan(100);
    expect(parsed).toBeLessThan(19_000);
  });
});

async function* chunks(parts: Uint8Array[], pulled: { count: number } = { count: 0 }): AsyncGenerator<Uint8Array> {
  for (const p of parts) {
    pulled.count += 1;
    yield p;
  }
}

async function rejects(p: Promise<unknown>, code: S3ErrorCode, message: RegExp): Promise<void> {
  let error: unknown = null;
  try {
    await p;
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(S3Error);
  expect((error as S3Error).code).toBe(code);
  expect((error as S3Error).message).toMatch(message);
}

describe("readXmlBody", () => {
  const encoder = new TextEncoder();

  test("joins chunks, even a character split between them, and copies chunks the body reuses", async () => {
    const bytes = encoder.encode("<Delete><Object><Key>é😀</Key></Object></Delete>");
    const buffer = new Uint8Array(5);
    async function* reusing(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < bytes.length; i += 5) {
        const n = Math.min(5, bytes.length - i);
        buffer.set(bytes.subarray(i, i + n));
        yield buffer.subarray(0, n);
      }
    }
    const root = await readXmlBody(reusing(), bytes.length);
    expect(child(child(root, "Object"), "Key").text).toBe("é😀");
  });

  test("a body over the cap is EntityTooLarge naming the limit, and is read no further", async () => {
    const pulled = { count: 0 };
    const parts = [encoder.encode("<a>"), encoder.encode("xxxxxxxx"), encoder.encode("</a>"), encoder.encode("never")];
    await rejects(readXmlBody(chunks(parts, pulled), 10), "EntityTooLarge", /larger than the limit of 10 bytes/);
    expect(pulled.count).toBe(2);
    expect((await readXmlBody(chunks(parts.slice(0, 3)), 15)).text).toBe("xxxxxxxx");
  });

  test("empty, not UTF-8, not XML", async () => {
    await rejects(readXmlBody(chunks([]), 100), "MalformedXML", /request body is empty/);
    await rejects(
      readXmlBody(chunks([new Uint8Array([0x3c, 0x61, 0x3e, 0xff, 0x3c, 0x2f, 0x61, 0x3e])]), 100),
      "MalformedXML",
      /not valid UTF-8/,
    );
    await rejects(readXmlBody(chunks([encoder.encode("<a>")]), 100), "MalformedXML", /document ends inside <a>/);
  });

  test("an error the body raises (a failed digest) passes through", async () => {
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield encoder.encode("<a></a>");
      throw new S3Error("BadDigest", "checksum mismatch");
    }
    await rejects(readXmlBody(failing(), 100), "BadDigest", /checksum mismatch/);
  });
});
