package main

import "context"

func bench(ctx context.Context, args []string) error { return nil }
