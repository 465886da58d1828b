package udpio

const (
	sysRecvmmsg = 243
	sysSendmmsg = 269
)
