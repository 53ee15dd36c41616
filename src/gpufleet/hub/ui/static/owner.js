// Who a process belongs to beyond its Unix user, as one short phrase (mirrors ui/users.py).
export function ownerText(o) {
  if (!o) return "";
  const parts = [];
  if (o.slurm_job) parts.push(`job ${o.slurm_job}`);
  if (o.pod) parts.push(`pod ${o.namespace ? `${o.namespace}/` : ""}${o.pod}`);
  else if (o.container) parts.push(`${o.runtime || "container"} ${o.container}`);
  return parts.join(", ");
}
