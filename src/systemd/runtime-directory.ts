/**
 * The service's runtime directory. systemd sets RUNTIME_DIRECTORY from the unit's RuntimeDirectory= as absolute
 * paths, colon-separated when the unit lists several; sdepmd keeps its files in the first.
 */
export function runtimeDirectory(value: string | undefined): string | undefined {
  return value?.split(':')[0] || undefined;
}
