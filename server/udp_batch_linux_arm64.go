package server

const (
	sysRecvmmsg = 243
	sysSendmmsg = 269
)
