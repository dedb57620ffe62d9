"""`python -m bench` (`make bench`): how slo-engine's output scales, measured, not assumed.

Three questions: does compiling 1,000 SLOs stay interactive (process start-up included);
what do the generated rules cost a real Prometheus compared with the naive scheme they
replace (raw `rate()` over every alert window, the period as an average of 5m ratios), and
how far is each scheme's period error ratio from the truth; and what does one budget
refresh of 1,000 SLOs over 30 days cost, cold and warm, against slo-generator's loop of two
queries per SLO per window; and how long the generated promtool tests take per file as a
service grows from 1 to 10 SLOs (they must not grow). Results go into docs/performance.md between
`<!-- bench:start -->` and `<!-- bench:end -->`; `--only PART` runs one part and replaces only
its text.
"""
