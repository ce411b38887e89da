module ctxtreebench

go 1.21
