package client

// PendingCount returns the number of requests waiting for a response, for
// the tests of the client package.
func PendingCount(c *Client) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}
