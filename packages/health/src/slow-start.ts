/**
 * Slow start (nginx's `slow_start`, Envoy's slow_start_config): a target that
 * comes back (unhealthy → healthy, or un-ejected) gets a weight factor that
 * ramps linearly from `minPercent` % to 100 % over `windowMs`.
 */
export function slowStartFactor(recoveredAt: number | undefined, now: number, windowMs: number, minPercent: number): number {
  if (windowMs <= 0 || recoveredAt === undefined) return 1;
  const progress = (now - recoveredAt) / windowMs;
  if (progress >= 1) return 1;
  const min = Math.min(1, Math.max(0, minPercent / 100));
  return min + (1 - min) * Math.max(0, progress);
}
