/** What a page has to say above its content: a problem (announced at once to assistive technology)
 * or a status message (announced politely). Nothing is rendered while there is nothing to say. */

export function Problem({ text }: { text: string | null | undefined }) {
  if (!text) return null;
  return (
    <p className="error" role="alert">
      {text}
    </p>
  );
}

export function Status({ text }: { text: string | null | undefined }) {
  if (!text) return null;
  return (
    <p className="muted" role="status">
      {text}
    </p>
  );
}
