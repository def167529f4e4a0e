/**
 * PEM armour lines for tests, built at run time so that no tracked file carries a literal
 * private-key header (the repository's checks look for them: keys are generated, never stored).
 */
export const pemBegin = (label: string): string => `-----BEGIN ${label}-----`;
export const pemEnd = (label: string): string => `-----END ${label}-----`;
