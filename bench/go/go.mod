module prologue-bench

go 1.19
