// Sarama 1.22 (Debian 12's Go Kafka client, pre-2017 protocol versions) against Rafka.
// Each step uses Sarama's default configuration; where Sarama itself refuses a feature
// below some Kafka version (consumer groups need V0_10_2_0, DescribeConfigs V0_11_0_0,
// CreateTopics v2 V1_0_0_0), the step sets exactly that version and nothing else.
// What each version sends: V0_8_2_0 (the default) Produce v0 with magic-0 messages,
// Fetch v0, ListOffsets v0, Metadata v0; V0_10_0_0 Produce v2 / Fetch v2 with magic-1
// messages and timestamps; V0_10_2_0 groups: JoinGroup v1, SyncGroup v0, Heartbeat v0,
// OffsetFetch v1, OffsetCommit v1, Fetch v3, ListOffsets v1.
// Usage: sarama-check BROKER_ADDR
package main

import (
	"context"
	"fmt"
	"io/ioutil"
	"log"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

const topic = "sarama-topic"
const partitions = 2

var failures = 0

func check(name string, ok bool, detail string) {
	if ok {
		fmt.Printf("ok   %s\n", name)
	} else {
		failures++
		fmt.Printf("FAIL %s: %s\n", name, detail)
	}
}

func must(what string, err error) {
	if err != nil {
		fmt.Printf("FAIL %s: %v\n", what, err)
		os.Exit(1)
	}
}

func config(v sarama.KafkaVersion) *sarama.Config {
	c := sarama.NewConfig()
	c.Version = v
	c.ClientID = "sarama-check"
	return c
}

// produce sends n messages key-i/value-i spread over the partitions (the default hash
// partitioner) and returns how many went to each partition.
func produce(addr string, c *sarama.Config, prefix string, n int) map[int32][]string {
	c.Producer.Return.Successes = true // required by the SyncProducer API
	p, err := sarama.NewSyncProducer([]string{addr}, c)
	must("producer "+prefix, err)
	defer p.Close()
	sent := map[int32][]string{}
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("%s-k%d", prefix, i)
		value := fmt.Sprintf("%s-v%d", prefix, i)
		part, _, err := p.SendMessage(&sarama.ProducerMessage{
			Topic: topic, Key: sarama.StringEncoder(key), Value: sarama.StringEncoder(value),
			Timestamp: time.Unix(1700000000+int64(i), 0),
		})
		must("send "+key, err)
		sent[part] = append(sent[part], key+"="+value)
	}
	return sent
}

// readPartition reads want messages of a partition from offset `from` with a plain
// (group-less) consumer; returns key=value strings and the timestamps.
func readPartition(addr string, c *sarama.Config, part int32, from int64, want int) ([]string, []time.Time) {
	consumer, err := sarama.NewConsumer([]string{addr}, c)
	must("consumer", err)
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(topic, part, from)
	must("consume partition", err)
	defer pc.Close()
	var got []string
	var ts []time.Time
	deadline := time.After(20 * time.Second)
	for len(got) < want {
		select {
		case m := <-pc.Messages():
			got = append(got, string(m.Key)+"="+string(m.Value))
			ts = append(ts, m.Timestamp)
		case e := <-pc.Errors():
			must("partition consumer", e)
		case <-deadline:
			return got, ts
		}
	}
	return got, ts
}

type handler struct {
	mu    sync.Mutex
	seen  []string
	ready chan struct{}
	once  sync.Once
}

func (h *handler) Setup(s sarama.ConsumerGroupSession) error {
	h.once.Do(func() { close(h.ready) })
	return nil
}
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		h.mu.Lock()
		h.seen = append(h.seen, string(m.Key)+"="+string(m.Value))
		h.mu.Unlock()
		s.MarkMessage(m, "")
	}
	return nil
}
func (h *handler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.seen)
}

// groupSession joins group "sarama-group" (defaults: OffsetNewest for a group without
// commits, auto-commit every second), calls during() once the group is set up, waits for
// want messages and leaves, committing on the way out.
func groupSession(addr string, want int, during func()) []string {
	c := config(sarama.V0_10_2_0)
	g, err := sarama.NewConsumerGroup([]string{addr}, "sarama-group", c)
	must("consumer group", err)
	h := &handler{ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, h); err != nil && ctx.Err() == nil {
				fmt.Printf("consume: %v\n", err)
				time.Sleep(200 * time.Millisecond)
			}
		}
	}()
	go func() {
		for e := range g.Errors() {
			fmt.Printf("group error: %v\n", e)
		}
	}()
	select {
	case <-h.ready:
	case <-time.After(30 * time.Second):
		must("group setup", fmt.Errorf("no assignment within 30 s"))
	}
	during()
	deadline := time.Now().Add(30 * time.Second)
	for h.count() < want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	must("group close", g.Close())
	h.mu.Lock()
	defer h.mu.Unlock()
	sort.Strings(h.seen)
	return h.seen
}

func flatten(m map[int32][]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v...)
	}
	sort.Strings(out)
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func main() {
	addr := os.Args[1]
	sarama.Logger = log.New(ioutil.Discard, "", 0)

	// The topic, with one non-default setting to read back later (CreateTopics v2).
	admin, err := sarama.NewClusterAdmin([]string{addr}, config(sarama.V1_0_0_0))
	must("admin", err)
	retention := "3600000"
	must("create topic", admin.CreateTopic(topic, &sarama.TopicDetail{
		NumPartitions: partitions, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"retention.ms": &retention},
	}, false))
	admin.Close()

	// 1. Default settings: Produce v0 (magic 0), then Fetch v0 + ListOffsets v0.
	sent0 := produce(addr, config(sarama.MinVersion), "m0", 20)
	var got0 []string
	for p := int32(0); p < partitions; p++ {
		got, _ := readPartition(addr, config(sarama.MinVersion), p, sarama.OffsetOldest, len(sent0[p]))
		check(fmt.Sprintf("default producer -> default consumer, partition %d", p),
			equal(got, sent0[p]), fmt.Sprintf("sent %v got %v", sent0[p], got))
		got0 = append(got0, got...)
	}
	check("all 20 default-version messages read back", len(got0) == 20, fmt.Sprint(len(got0)))

	// 2. V0_10_0_0 with gzip: Produce v2 with a compressed magic-1 wrapper, read back with
	// Fetch v2 (magic 1, timestamps) from the first offset after step 1.
	c := config(sarama.V0_10_0_0)
	c.Producer.Compression = sarama.CompressionGZIP
	sent1 := produce(addr, c, "m1", 10)
	for p := int32(0); p < partitions; p++ {
		if len(sent1[p]) == 0 {
			continue
		}
		got, ts := readPartition(addr, config(sarama.V0_10_0_0), p, int64(len(sent0[p])), len(sent1[p]))
		check(fmt.Sprintf("gzip magic-1 round trip, partition %d", p), equal(got, sent1[p]),
			fmt.Sprintf("sent %v got %v", sent1[p], got))
		okTs := len(ts) == len(sent1[p])
		for i, t := range ts {
			var idx int
			fmt.Sscanf(sent1[p][i], "m1-k%d", &idx)
			if t.Unix() != 1700000000+int64(idx) {
				okTs = false
			}
		}
		check(fmt.Sprintf("magic-1 timestamps kept, partition %d", p), okTs, fmt.Sprint(ts))
	}

	// 3. A consumer group (Sarama's minimum for groups, V0_10_2_0). With the default
	// OffsetNewest it reads only what is produced after it joined.
	sent2 := map[int32][]string{}
	seen := groupSession(addr, 12, func() { sent2 = produce(addr, config(sarama.MinVersion), "m2", 12) })
	check("group consumed the 12 messages produced after joining", equal(seen, flatten(sent2)),
		fmt.Sprintf("want %v got %v", flatten(sent2), seen))

	// Committed offsets (OffsetFetch v1) are the log end offsets.
	client, err := sarama.NewClient([]string{addr}, config(sarama.V0_10_2_0))
	must("client", err)
	om, err := sarama.NewOffsetManagerFromClient("sarama-group", client)
	must("offset manager", err)
	for p := int32(0); p < partitions; p++ {
		pom, err := om.ManagePartition(topic, p)
		must("manage partition", err)
		next, _ := pom.NextOffset()
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		must("get offset", err)
		check(fmt.Sprintf("committed offset of partition %d is its end", p), next == end,
			fmt.Sprintf("committed %d, end %d", next, end))
		pom.Close()
	}
	om.Close()
	client.Close()

	// While the group is away, 8 more messages; it resumes from its commit and reads
	// exactly those (without a commit, OffsetNewest would skip them).
	sent3 := produce(addr, config(sarama.MinVersion), "m3", 8)
	seen = groupSession(addr, 8, func() {})
	check("group resumed from its committed offsets", equal(seen, flatten(sent3)),
		fmt.Sprintf("want %v got %v", flatten(sent3), seen))

	// 4. DescribeConfigs v0 (Sarama sends v0 up to V1_1_0_0).
	admin, err = sarama.NewClusterAdmin([]string{addr}, config(sarama.V0_11_0_0))
	must("admin v0.11", err)
	entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
	must("describe configs", err)
	found := map[string]sarama.ConfigEntry{}
	for _, e := range entries {
		found[e.Name] = e
	}
	check("retention.ms as set, not default", found["retention.ms"].Value == retention && !found["retention.ms"].Default,
		fmt.Sprintf("%+v", found["retention.ms"]))
	check("cleanup.policy is the default delete", found["cleanup.policy"].Value == "delete" && found["cleanup.policy"].Default,
		fmt.Sprintf("%+v", found["cleanup.policy"]))
	admin.Close()

	if failures > 0 {
		fmt.Printf("sarama: %d failed\n", failures)
		os.Exit(1)
	}
	fmt.Println("sarama: all passed")
}
