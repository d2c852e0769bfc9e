"""Stage 7, jobs: what a command does from start to finish, composed of the stages before. A
training run (`training_run`: train, resume; it fits, tests once and reports), a search
(`tune`) and a benchmark (`bench`)."""
