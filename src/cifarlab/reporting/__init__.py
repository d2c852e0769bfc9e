"""Stage 6, reporting: what a run looks like to a person. Per-class tables (`tables`), the
report's pictures and page (`plots`, `report`), runs side by side (`compare`) and the table of
a folder of runs (`run_list`)."""
