/** A labelled control: the label names the control by id (not by wrapping it), so its accessible
 * name is the label alone, never the label plus the control's current text. */
import { type ReactNode, useId } from "react";

export function Field({ label, children }: { label: string; children: (id: string) => ReactNode }) {
  const id = useId();
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      {children(id)}
    </div>
  );
}
