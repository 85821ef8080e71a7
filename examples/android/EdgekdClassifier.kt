// Classify a Bitmap on Android with a .tflite model exported by edgekd, through LiteRT's Interpreter API.
// Not compiled by edgekd's tests (there is no Android SDK on its build machine): see README.md in this folder.
package com.example.edgekd

import android.content.Context
import android.graphics.Bitmap
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import kotlin.math.abs
import kotlin.math.exp
import kotlin.math.floor
import kotlin.math.sign

/** From `edgekd inspect student-int8.tflite` (the model's metadata): copy your model's values here. */
object ModelInfo {
    const val MODEL = "student-int8.tflite" // app/src/main/assets/
    const val LABELS = "labels.txt" // unzip -p student-int8.tflite labels.txt > app/src/main/assets/labels.txt
    const val NCHW = true // metadata input_layout: NCHW (litert-torch converter) or NHWC (onnx2tf)
    val MEAN = floatArrayOf(0.30495f) // metadata mean: per channel, for pixels scaled to [0, 1]
    val STD = floatArrayOf(0.37575f) // metadata std
}

class EdgekdClassifier(context: Context, threads: Int = 4) : AutoCloseable {
    private val interpreter = Interpreter(loadModel(context), Interpreter.Options().setNumThreads(threads))
    val labels: List<String> = context.assets.open(ModelInfo.LABELS).bufferedReader().readLines().filter { it.isNotBlank() }
    private val shape = interpreter.getInputTensor(0).shape() // [1, C, H, W] or [1, H, W, C]
    private val channels = if (ModelInfo.NCHW) shape[1] else shape[3]
    private val height = if (ModelInfo.NCHW) shape[2] else shape[1]
    private val width = if (ModelInfo.NCHW) shape[3] else shape[2]

    init {
        val classes = interpreter.getOutputTensor(0).shape().last()
        require(classes == labels.size) { "${labels.size} labels but the model outputs $classes classes" }
    }

    /** The top-k (label, probability) pairs for one image. */
    fun classify(bitmap: Bitmap, topK: Int = 3): List<Pair<String, Float>> {
        val input = interpreter.getInputTensor(0)
        val output = interpreter.getOutputTensor(0)
        val inBuf = ByteBuffer.allocateDirect(input.numBytes()).order(ByteOrder.nativeOrder())
        val qIn = input.quantizationParams()
        for (v in preprocess(bitmap)) {
            if (input.dataType() == DataType.INT8) { // a file exported with int8_io: true takes int8 input
                val s = v / qIn.scale // TFLite rounds half away from zero
                inBuf.put((sign(s) * floor(abs(s) + 0.5f) + qIn.zeroPoint).coerceIn(-128f, 127f).toInt().toByte())
            } else {
                inBuf.putFloat(v)
            }
        }
        inBuf.rewind()
        val outBuf = ByteBuffer.allocateDirect(output.numBytes()).order(ByteOrder.nativeOrder())
        interpreter.run(inBuf, outBuf)
        outBuf.rewind()
        val qOut = output.quantizationParams()
        val logits = FloatArray(labels.size) {
            if (output.dataType() == DataType.INT8) (outBuf.get() - qOut.zeroPoint) * qOut.scale else outBuf.float
        }
        val max = logits.max()
        val e = logits.map { exp(it - max) }
        val sum = e.sum()
        return e.mapIndexed { i, v -> labels[i] to v / sum }.sortedByDescending { it.second }.take(topK)
    }

    /** The training preprocessing: grey (PIL's "L" weights) or RGB, [0, 1], bilinear resize, (x - mean) / std. */
    private fun preprocess(bitmap: Bitmap): FloatArray {
        val scaled = Bitmap.createScaledBitmap(bitmap, width, height, true) // bilinear; see README on shrinking
        val px = IntArray(width * height).also { scaled.getPixels(it, 0, width, 0, 0, width, height) }
        val out = FloatArray(channels * height * width)
        for (i in px.indices) {
            val r = (px[i] shr 16) and 0xFF
            val g = (px[i] shr 8) and 0xFF
            val b = px[i] and 0xFF
            val values = if (channels == 1) intArrayOf((r * 19595 + g * 38470 + b * 7471 + 0x8000) shr 16) else intArrayOf(r, g, b)
            for (c in 0 until channels) {
                val v = (values[c] / 255f - ModelInfo.MEAN[c]) / ModelInfo.STD[c]
                out[if (ModelInfo.NCHW) c * height * width + i else i * channels + c] = v
            }
        }
        return out
    }

    override fun close() = interpreter.close()

    private fun loadModel(context: Context): MappedByteBuffer =
        context.assets.openFd(ModelInfo.MODEL).use { fd ->
            FileInputStream(fd.fileDescriptor).channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
        }
}
