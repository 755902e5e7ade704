/**
 * An S3 error as the client receives it: the XML error document with the status of its code. The
 * gateway renders every thrown error with it; a handler uses it directly only when the error
 * response needs a header of its own (416 InvalidRange carries Content-Range: bytes * /SIZE).
 */
import type { S3Error } from "./s3_error.ts";
import { errorXml } from "./xml.ts";

export function errorResponse(error: S3Error, resource: string, request_id: string, headers: Record<string, string> = {}): Response {
  return new Response(errorXml(error, resource, request_id), {
    status: error.status,
    headers: { ...headers, "Content-Type": "application/xml" },
  });
}
