/*
 * solve.h: what posthoc.c and solve.c share. Private to src/posthoc.
 */
#ifndef EMA_POSTHOC_SOLVE_H
#define EMA_POSTHOC_SOLVE_H

/* Inner product <p_a, p_b> of two profiles, arguments already validated.
   Written with the earlier time first, (t_lo/t_hi)^g_hi / t_hi, which is
   the formula of ema/posthoc.h for either order and makes the result
   exactly symmetric. */
double ema__power_inner_unchecked(double ta, double ga, double tb, double gb);

#endif
