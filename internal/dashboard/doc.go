// Package dashboard is `trainer dashboard`: a local web page that shows one or more run directories while
// they run and after. Handler serves the page (static/, embedded in the binary, with uPlot vendored under
// static/vendor/ by vendor.sh) and its JSON APIs, all read from the run directories on each request:
//
//	/api/runs                          the runs (name, directory, stages with first/last step and time: the
//	                                   stage timeline) and the config.yaml keys that differ between them
//	/api/metrics?run=I&since=N         run I's metrics.jsonl records from the N-th on (live polling), and next
//	/api/rollouts?run=I&kind=K&stage=S&step=N
//	                                   the rollouts.jsonl lines of kind K (train or eval) of one step (the
//	                                   newest when step is left out), and every (kind, stage, step) there is
//
// The page charts every metric (grouped by prefix, the runs overlaid), polls for new records every 2 s,
// lists the differing config keys and the stage timeline, and browses the logged rollouts as conversations
// with each token coloured by the sampler's log-probability or the learner's advantage.
//
// ListenAddr keeps the dashboard on the loopback interface unless told otherwise (the rule of
// internal/telemetry): the pages have no authentication.
package dashboard
